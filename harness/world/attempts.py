"""One call to a fake API in flight: how the service responds, and what the ledger records.

``Services`` opens an ``Attempt`` per call, with the fault the plan decided for it. The attempt
plays that fault out at the right moment — a 429 or a timeout before the effect, a timeout that
hides an effect already applied — and turns into the ledger's ``Call`` when it ends, with an
outcome that says which of those happened.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from ..exceptions import (
    IdempotencyKeyReusedError,
    RateLimitError,
    ServiceError,
    ServiceTimeoutError,
    WorkerCrashed,
)
from .faults import Decision, Fault
from .ledger import Call

__all__ = ["Attempt", "describe_call", "outcome_of"]


@dataclass(kw_only=True)
class Attempt:
    """One call in flight: its decided fault, and what the ledger will say about it."""

    service: str
    operation: str
    subject: str
    key: str | None
    args: dict[str, Any]
    decision: Decision
    caller: str
    job_id: int | None
    in_transaction: bool
    at: float
    wall: float
    outcome: str = "ok"
    result: str | None = None
    error: str | None = None

    def succeed(self, result: str, *, replayed: bool = False) -> None:
        self.result = result
        self.outcome = "replayed" if replayed else "ok"

    async def respond(self) -> None:
        """The service takes its time. A timed-out call spends half its wait here and half after
        the point where its effect would (or would not) be applied."""
        if self.decision.outcome in (Fault.TIMEOUT_BEFORE, Fault.TIMEOUT_AFTER):
            await asyncio.sleep(self.decision.timeout_seconds / 2)
        else:
            await asyncio.sleep(self.decision.latency)

    async def before_effect(self) -> None:
        """Raise the faults that leave no effect behind."""
        if self.decision.outcome is Fault.RATE_LIMIT:
            retry_after = self.decision.retry_after
            raise RateLimitError(
                f"429 Too Many Requests from {self.service} for {self.describe()}: "
                f"retry after {retry_after:.2f} s",
                retry_after=retry_after,
                reset_at=time.time() + retry_after,
                service=self.service,
            )
        if self.decision.outcome is Fault.TIMEOUT_BEFORE:
            await asyncio.sleep(self.decision.timeout_seconds / 2)
            raise self._timeout()

    async def after_effect(self) -> None:
        """Raise the fault that hides an effect already applied: the response is lost."""
        if self.decision.outcome is Fault.TIMEOUT_AFTER:
            await asyncio.sleep(self.decision.timeout_seconds / 2)
            raise self._timeout()

    def _timeout(self) -> ServiceTimeoutError:
        # The same words for both timeout kinds: the client cannot tell them apart, nor may we.
        return ServiceTimeoutError(
            f"{self.service} did not answer {self.describe()} within "
            f"{self.decision.timeout_seconds:.3f} s; the request may or may not have taken effect",
            service=self.service,
        )

    def describe(self) -> str:
        return describe_call(self.operation, self.subject)

    def fail(self, exc: BaseException) -> None:
        self.result = None
        self.error = type(exc).__name__
        self.outcome = outcome_of(exc, self.decision)

    def to_call(self, finished: float, site: str | None = None) -> Call:
        return Call(
            at=self.at,
            wall=self.wall,
            duration=finished - self.at,
            service=self.service,
            operation=self.operation,
            caller=self.caller,
            job_id=self.job_id,
            subject=self.subject,
            idempotency_key=self.key,
            args=self.args,
            outcome=self.outcome,
            result=self.result,
            error=self.error,
            in_transaction=self.in_transaction,
            site=site,
        )


def describe_call(operation: str, subject: str) -> str:
    """``send_email to a@x.com``, for messages and violation details."""
    if operation == "send_email":
        return f"send_email to {subject}"
    if operation == "get_reply":
        return f"get_reply for message {subject}"
    if operation == "analyze_sentiment":
        text = subject if len(subject) <= 40 else subject[:37] + "..."
        return f"analyze_sentiment of {text!r}"
    return f"{operation} for {subject}"


def outcome_of(exc: BaseException, decision: Decision) -> str:
    if isinstance(exc, RateLimitError):
        return "rate_limited"
    if isinstance(exc, ServiceTimeoutError):
        return decision.outcome.value
    if isinstance(exc, IdempotencyKeyReusedError):
        return "key_reused"
    if isinstance(exc, ServiceError) and exc.status == 404:
        return "not_found"
    if isinstance(exc, ServiceError):  # 400s: a bad address, a bad sentiment
        return "invalid"
    if isinstance(exc, WorkerCrashed):
        return "crashed"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    return "error"
