"""The fake external APIs: SendGrid, a sentiment API and a CRM, with faults that can be planned.

They behave like the real ones where it matters to the kata:

* ``send_email`` returns a message id (SendGrid's ``X-Message-ID``); the same idempotency key with
  the same arguments returns the same id and never delivers twice, even after a timeout that hid
  a successful delivery; the same key with other arguments is a 422.
* A bad address is a 400 (``InvalidEmailError``) every time, before any random fault: a
  permanent error must look permanent.
* 429s carry ``retry_after`` and ``reset_at``; timeouts are ambiguous (``ServiceTimeoutError`` has
  the same message whether or not the request took effect).

While serving, the fakes watch the caller and record ``Violation``s in the ledger - the call
still proceeds, so a test can finish and report every mistake, not only the first:

* calling while the task holds a database transaction;
* calling again for the same (service, subject) before a ``retry_after`` it was given had passed;
* calling again for a subject that already failed permanently (``InvalidEmailError``);
* reusing an idempotency key with different arguments.

The candidate imports the module-level functions (``from harness import send_email``); they
delegate to the ``Services`` instance made active with ``use_services``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from . import crashes
from .attempts import Attempt
from .exceptions import (
    IdempotencyKeyReusedError,
    InvalidEmailError,
    MessageNotFoundError,
    NoActiveServices,
    RateLimitError,
    ServiceError,
)
from .faults import FaultPlan
from .history import code_site
from .ledger import CrmAction, Delivery, Ledger, Violation, ViolationKind
from .replies import (
    REPLY_TEMPLATES,
    SENTIMENTS,
    classify_sentiment,
    invalid_email_reason,
    reply_for,
)
from .scope import caller_name, current, scoped
from .transactions import current_transaction

__all__ = [
    "CRM_ACTIONS",
    "REPLY_TEMPLATES",
    "RETRY_AFTER_TOLERANCE",
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

RETRY_AFTER_TOLERANCE = max(0.001, time.get_clock_info("monotonic").resolution)
"""How early a retry may arrive and still count as patient. asyncio wakes a sleep up to one clock
tick early (15.6 ms on Windows), and a correct solution must never be flagged."""


def _token(*parts: object, size: int = 16) -> str:
    digest = hashlib.sha256(repr(parts).encode("utf-8")).digest()
    return base64.urlsafe_b64encode(digest[:size]).rstrip(b"=").decode("ascii")


class Services:
    """One set of fake APIs with its own state, fault plan and ledger (one per run)."""

    def __init__(self, plan: FaultPlan | None = None, *, ledger: Ledger | None = None) -> None:
        self.plan = plan if plan is not None else FaultPlan.none()
        self.ledger = ledger if ledger is not None else Ledger()
        #: caller -> operation, for every API call under way.
        self.in_flight: dict[str, str] = {}
        self.reset()

    def __repr__(self) -> str:
        return f"Services(seed={self.plan.seed}, calls={len(self.ledger.calls)})"

    def reset(self) -> None:
        """Forget every delivery, key and call: a fresh run with the same plan."""
        self.ledger.reset()
        self._calls_per_subject: Counter[tuple[str, str]] = Counter()
        self._retry_after: dict[tuple[str, str], tuple[float, float]] = {}
        self._permanent: dict[tuple[str, str], tuple[float, str]] = {}
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
            at=_now(),
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
            at=_now(),
        )
        self.ledger.actions.append(action)
        if key is not None:
            self._actions_by_key[key] = action
        return action, False

    def _check_same_args(self, attempt: Attempt, first: dict[str, Any]) -> None:
        changed = {name: value for name, value in attempt.args.items() if first[name] != value}
        if not changed:
            return
        before = ", ".join(f"{name}={_short(first[name])}" for name in changed)
        now = ", ".join(f"{name}={_short(value)}" for name, value in changed.items())
        self._violate(
            attempt,
            ViolationKind.IDEMPOTENCY_KEY_REUSED,
            f"{attempt.operation} reused idempotency key {attempt.key!r} with different "
            f"arguments: first {before}, now {now}",
        )
        raise IdempotencyKeyReusedError(
            f"422 Unprocessable Entity from {attempt.service}: idempotency key {attempt.key!r} "
            f"was first used with {before}, now with {now}",
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
        attempt = Attempt(
            service=service,
            operation=operation,
            subject=subject,
            key=key,
            args=args,
            decision=self.plan.decide(service, subject, nth),
            caller=caller_name(),
            job_id=current().job_id,
            in_transaction=current_transaction() is not None,
            at=loop.time(),
            wall=time.time(),
        )
        self._check_caller(attempt)
        # What each caller is waiting on right now, for dashboards ("worker-3: in send_email").
        self.in_flight[attempt.caller] = operation
        try:
            yield attempt
        except BaseException as exc:
            attempt.fail(exc)
            self._remember_error(attempt, exc, loop.time())
            raise
        finally:
            self.in_flight.pop(attempt.caller, None)
            self.ledger.calls.append(attempt.to_call(loop.time(), code_site()))

    def _check_caller(self, attempt: Attempt) -> None:
        what = attempt.describe()
        tx = current_transaction()
        if attempt.in_transaction and tx is not None:
            # The evidence only (which call, where, which transaction): the grader's diagnosis
            # adds why it is wrong and what to do, once.
            site = code_site()
            self._violate(
                attempt,
                ViolationKind.CALL_IN_TRANSACTION,
                f"{what} was called by {_who(attempt)} while it held a database transaction "
                f"(the one it opened {tx.age():.3f} s earlier"
                + (f"; the call is at {site})" if site else ")"),
            )
        subject = (attempt.service, attempt.subject)
        if (given := self._retry_after.get(subject)) is not None:
            given_at, retry_after = given
            waited = attempt.at - given_at
            if waited < retry_after - RETRY_AFTER_TOLERANCE:
                self._violate(
                    attempt,
                    ViolationKind.RETRY_BEFORE_RETRY_AFTER,
                    f"{what} was retried {waited:.3f} s after a 429 that said "
                    f"retry_after={retry_after:.3f} s (by {_who(attempt)})",
                )
        if (failed := self._permanent.get(subject)) is not None and not _crashed_since(
            attempt.job_id, failed[0]
        ):
            failed_at, error = failed
            self._violate(
                attempt,
                ViolationKind.RETRY_AFTER_PERMANENT_ERROR,
                f"{what} was called again {attempt.at - failed_at:.3f} s after it failed "
                f"permanently with {error} (by {_who(attempt)}); a permanent error never succeeds "
                "on retry",
            )

    def _remember_error(self, attempt: Attempt, exc: BaseException, now: float) -> None:
        subject = (attempt.service, attempt.subject)
        if isinstance(exc, RateLimitError):
            self._retry_after[subject] = (now, exc.retry_after)
        elif isinstance(exc, InvalidEmailError):
            # The latest failure: a retry is excused only by a crash after the failure it repeats.
            self._permanent[subject] = (now, f"InvalidEmailError ({exc.reason})")

    def record_wait_in_transaction(self, seconds: float, where: str) -> None:
        """Record a backoff wait of ``seconds`` (``asyncio.sleep`` at ``where``) that the calling
        task made while holding a database transaction. The grader's sleep guard reports these:
        they involve no API call, so the fakes cannot see them themselves."""
        caller, job_id = caller_name(), current().job_id
        who = caller if job_id is None else f"{caller} on job {job_id}"
        self.ledger.violations.append(
            Violation(
                kind=ViolationKind.WAIT_IN_TRANSACTION,
                service="asyncio",
                subject="sleep",
                caller=caller,
                job_id=job_id,
                at=_now(),
                detail=f"asyncio.sleep({seconds:g}) at {where}, by {who}, inside its transaction",
            )
        )

    def _violate(self, attempt: Attempt, kind: ViolationKind, detail: str) -> None:
        self.ledger.violations.append(
            Violation(
                kind=kind,
                service=attempt.service,
                subject=attempt.subject,
                caller=attempt.caller,
                job_id=attempt.job_id,
                at=attempt.at,
                detail=detail,
            )
        )


def _crashed_since(job_id: int | None, since: float) -> bool:
    """Whether ``job_id``'s worker was killed after ``since``: then the permanent error may never
    have been recorded, and the next worker cannot know it; asking again is no mistake."""
    plan = crashes.active_crash_plan()
    if plan is None or job_id is None:
        return False
    return any(crash.at >= since for crash in plan.crashes_of(job_id))


def _who(attempt: Attempt) -> str:
    return attempt.caller if attempt.job_id is None else f"{attempt.caller} on job {attempt.job_id}"


def _short(value: Any, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 4] + "...'"


def _now() -> float:
    return asyncio.get_running_loop().time()


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
