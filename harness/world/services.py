"""The fake external APIs: SendGrid, a sentiment API and a CRM, with faults that can be planned.

They behave like the real ones where it matters to the kata:

* ``send_email`` returns a message id (SendGrid's ``X-Message-ID``); the same idempotency key with
  the same arguments returns the same id and never delivers twice, even after a timeout that hid
  a successful delivery; the same key with other arguments is a 422.
* A bad address is a 400 (``InvalidEmailError``) every time, before any random fault: a
  permanent error must look permanent.
* 429s carry ``retry_after`` and ``reset_at``; timeouts are ambiguous (``ServiceTimeoutError`` has
  the same message whether or not the request took effect).

While serving, a ``Referee`` (``referee.py``) watches each caller and records what it does wrong
in the ledger; the call still proceeds.

The candidate imports the module-level functions (``from harness import send_email``); they
delegate to the ``Services`` instance made active with ``use_services``.
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import Any

from ..exceptions import (
    IdempotencyKeyReusedError,
    InvalidEmailError,
    MessageNotFoundError,
    NoActiveServices,
    ServiceError,
)
from ..ownership import code_site
from ..scope import caller_name, current, scoped
from ..sql.transactions import current_transaction
from . import crashes
from .account import SendAccount
from .attempts import Attempt
from .differences import how_it_differs
from .faults import Fault, FaultPlan, stable_digest
from .ledger import CrmAction, Delivery, Ledger
from .referee import Referee
from .replies import (
    REPLY_TEMPLATES,
    SENTIMENTS,
    classify_sentiment,
    invalid_email_reason,
    reply_for,
)

__all__ = [
    "CRM_ACTIONS",
    "REPLY_TEMPLATES",
    "SENTIMENTS",
    "Services",
    "active_services",
    "analyze_sentiment",
    "classify_sentiment",
    "get_reply",
    "invalid_email_reason",
    "reply_for",
    "route_customer",
    "send_email",
    "use_services",
]

CRM_ACTIONS: dict[str, str] = {
    "positive": "sales_followup",
    "negative": "retention_offer",
    "neutral": "nurture",
}


#: How a 422 names the arguments that changed.
_ARGUMENT_NAMES = {"to": "address", "email": "address"}


def _token(*parts: object, size: int = 16) -> str:
    digest = stable_digest(*parts)
    return base64.urlsafe_b64encode(digest[:size]).rstrip(b"=").decode("ascii")


class Services:
    """One set of fake APIs with its own state, fault plan and ledger (one per run)."""

    def __init__(
        self,
        plan: FaultPlan | None = None,
        *,
        ledger: Ledger | None = None,
        account: SendAccount | None = None,
    ) -> None:
        self.plan = plan if plan is not None else FaultPlan.none()
        self.ledger = ledger if ledger is not None else Ledger()
        #: SendGrid's rate limit for the whole account (Task G's tests only): a send that finds
        #: its bucket empty is answered 429, whatever the plan says.
        self.account = account
        self.referee = Referee(self.ledger)
        #: caller -> operation, for every API call under way.
        self.in_flight: dict[str, str] = {}
        self.reset()

    def __repr__(self) -> str:
        return f"Services(seed={self.plan.seed}, calls={len(self.ledger.calls)})"

    def reset(self) -> None:
        """Forget every delivery, key and call: a fresh run with the same plan."""
        self.ledger.reset()
        self.referee.reset()
        self._calls_per_subject: Counter[tuple[str, str]] = Counter()
        self._deliveries_by_key: dict[str, Delivery] = {}
        self._deliveries_by_id: dict[str, Delivery] = {}
        self._actions_by_key: dict[str, CrmAction] = {}
        self._unkeyed: Counter[str] = Counter()

    # -- the APIs -------------------------------------------------------------------------------

    async def send_email(self, to: str, body: str, idempotency_key: str | None) -> str:
        """Deliver ``body`` to ``to``; return the message id. ``None`` as key means no dedup."""
        args = {"to": to, "body": body}
        async with self._attempt("sendgrid", "send_email", to, idempotency_key, args) as attempt:
            await attempt.respond()
            reason = invalid_email_reason(to)
            if reason is not None:
                raise InvalidEmailError(
                    f"400 Bad Request from sendgrid: {to!r} {reason}", email=to, service="sendgrid"
                )
            await attempt.before_effect()
            delivery, replayed = self._deliver(attempt, to, body)
            attempt.succeed(delivery.message_id, replayed=replayed)
            if not replayed:
                crashes.check_after_effect(
                    "sendgrid", f"delivered message {delivery.message_id} to {to}"
                )
            await attempt.after_effect()
            return delivery.message_id

    async def get_reply(self, message_id: str) -> str:
        """The text the recipient of ``message_id`` replied (deterministic per recipient)."""
        args = {"message_id": message_id}
        async with self._attempt("sendgrid", "get_reply", message_id, None, args) as attempt:
            await attempt.respond()
            delivery = self._deliveries_by_id.get(message_id)
            if delivery is None:
                raise MessageNotFoundError(
                    f"404 Not Found from sendgrid: no message has id {message_id!r} "
                    "(was it sent? a timed-out send may never have been delivered)",
                    message_id=message_id,
                    service="sendgrid",
                )
            await attempt.before_effect()
            reply = reply_for(self.plan.seed, delivery.to)
            attempt.succeed(reply)
            await attempt.after_effect()
            return reply

    async def analyze_sentiment(self, text: str) -> str:
        """``"positive"``, ``"negative"`` or ``"neutral"``: the same answer for the same text."""
        async with self._attempt(
            "sentiment", "analyze_sentiment", text, None, {"text": text}
        ) as attempt:
            await attempt.respond()
            await attempt.before_effect()
            sentiment = classify_sentiment(text)
            attempt.succeed(sentiment)
            await attempt.after_effect()
            return sentiment

    async def route_customer(self, email: str, sentiment: str, idempotency_key: str | None) -> str:
        """Apply the CRM action for ``sentiment`` to ``email``; return the action id."""
        args = {"email": email, "sentiment": sentiment}
        async with self._attempt("crm", "route_customer", email, idempotency_key, args) as attempt:
            await attempt.respond()
            if sentiment not in SENTIMENTS:
                raise ServiceError(
                    f"400 Bad Request from crm: sentiment must be one of "
                    f"{', '.join(SENTIMENTS)}, got {sentiment!r}",
                    service="crm",
                    status=400,
                )
            await attempt.before_effect()
            action, replayed = self._route(attempt, email, sentiment)
            attempt.succeed(action.action_id, replayed=replayed)
            if not replayed:
                crashes.check_after_effect(
                    "crm", f"applied {action.action} ({action.action_id}) to {email}"
                )
            await attempt.after_effect()
            return action.action_id

    # -- effects --------------------------------------------------------------------------------

    def _deliver(self, attempt: Attempt, to: str, body: str) -> tuple[Delivery, bool]:
        # No await between the key check and the write: concurrent sends with one key cannot
        # both deliver, exactly as a real idempotency store guarantees.
        key = attempt.key
        if key is not None and (prior := self._deliveries_by_key.get(key)) is not None:
            self._check_same_args(attempt, {"to": prior.to, "body": prior.body})
            return prior, True
        if key is None:
            self._unkeyed[to] += 1
            message_id = _token(self.plan.seed, "sendgrid", None, to, self._unkeyed[to])
        else:
            message_id = _token(self.plan.seed, "sendgrid", key)
        delivery = Delivery(
            message_id=message_id,
            to=to,
            body=body,
            key=key,
            job_id=attempt.job_id,
            caller=attempt.caller,
            at=asyncio.get_running_loop().time(),
        )
        self.ledger.deliveries.append(delivery)
        self._deliveries_by_id[message_id] = delivery
        if key is not None:
            self._deliveries_by_key[key] = delivery
        return delivery, False

    def _route(self, attempt: Attempt, email: str, sentiment: str) -> tuple[CrmAction, bool]:
        key = attempt.key
        if key is not None and (prior := self._actions_by_key.get(key)) is not None:
            self._check_same_args(attempt, {"email": prior.email, "sentiment": prior.sentiment})
            return prior, True
        if key is None:
            self._unkeyed[f"crm:{email}"] += 1
            action_id = "act_" + _token(
                self.plan.seed, "crm", None, email, self._unkeyed[f"crm:{email}"], size=12
            )
        else:
            action_id = "act_" + _token(self.plan.seed, "crm", key, size=12)
        action = CrmAction(
            action_id=action_id,
            email=email,
            sentiment=sentiment,
            action=CRM_ACTIONS[sentiment],
            key=key,
            job_id=attempt.job_id,
            caller=attempt.caller,
            at=asyncio.get_running_loop().time(),
        )
        self.ledger.actions.append(action)
        if key is not None:
            self._actions_by_key[key] = action
        return action, False

    def _check_same_args(self, attempt: Attempt, first: dict[str, Any]) -> None:
        changed = {name: value for name, value in attempt.args.items() if first[name] != value}
        if not changed:
            return
        # Where they differ, not both cut to a prefix they share (two bodies of one email
        # usually start with the same greeting).
        how = "; ".join(
            how_it_differs(_ARGUMENT_NAMES.get(name, name), first[name], value)
            for name, value in changed.items()
        )
        self.referee.key_reused(attempt, how)
        raise IdempotencyKeyReusedError(
            f"422 Unprocessable Entity from {attempt.service}: idempotency key {attempt.key!r} "
            f"was first used with other arguments: {how}",
            key=attempt.key or "",
            service=attempt.service,
        )

    # -- bookkeeping ----------------------------------------------------------------------------

    @asynccontextmanager
    async def _attempt(
        self, service: str, operation: str, subject: str, key: str | None, args: dict[str, Any]
    ) -> AsyncIterator[Attempt]:
        """Check the caller, decide the call's fate, and record it in the ledger however it ends."""
        loop = asyncio.get_running_loop()
        self._calls_per_subject[(service, subject)] += 1
        nth = self._calls_per_subject[(service, subject)]
        wall = time.time()
        decision = self.plan.decide(service, subject, nth)
        if self.account is not None and operation == "send_email":
            retry_after = self.account.take(wall)
            if retry_after is not None:
                decision = replace(decision, outcome=Fault.RATE_LIMIT, retry_after=retry_after)
        attempt = Attempt(
            service=service,
            operation=operation,
            subject=subject,
            key=key,
            args=args,
            decision=decision,
            caller=caller_name(),
            job_id=current().job_id,
            in_transaction=current_transaction() is not None,
            at=loop.time(),
            wall=wall,
        )
        self.referee.check(attempt)
        # What each caller is waiting on right now, for dashboards ("worker-3: in send_email").
        self.in_flight[attempt.caller] = operation
        try:
            yield attempt
        except BaseException as exc:
            attempt.fail(exc)
            self.referee.remember_error(attempt, exc, loop.time())
            raise
        finally:
            self.in_flight.pop(attempt.caller, None)
            self.ledger.calls.append(attempt.to_call(loop.time(), code_site()))


# -- the active instance and the candidate-facing functions -------------------------------------


@contextmanager
def use_services(services: Services) -> Iterator[Services]:
    """Make ``services`` answer the module-level API functions in this task and its children."""
    with scoped(services=services):
        yield services


def active_services() -> Services:
    services = current().services
    if services is None:
        raise NoActiveServices(
            "no fake services are active: the grader, the runner and the scenarios provide them; "
            "in your own script wrap the calls in `with use_services(Services(FaultPlan.none())):`"
        )
    return services


async def send_email(to: str, body: str, idempotency_key: str | None) -> str:
    """Send ``body`` to ``to`` through the fake SendGrid; return the message id.

    The same ``idempotency_key`` returns the same message id and never delivers twice.
    """
    return await active_services().send_email(to, body, idempotency_key)


async def get_reply(message_id: str) -> str:
    """The customer's reply to the email ``message_id``."""
    return await active_services().get_reply(message_id)


async def analyze_sentiment(text: str) -> str:
    """``"positive"``, ``"negative"`` or ``"neutral"``; deterministic per text."""
    return await active_services().analyze_sentiment(text)


async def route_customer(email: str, sentiment: str, idempotency_key: str | None) -> str:
    """Route the customer in the fake CRM by sentiment; return the action id (same key, same
    action, applied once)."""
    return await active_services().route_customer(email, sentiment, idempotency_key)
