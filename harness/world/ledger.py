"""The ledger: everything the fake services saw and did, for the grader and the dashboards.

The fakes append; nobody else writes. Each record is a frozen value, so a grader can keep a
reference to a record without it changing under its feet, and the queries below are plain scans
(a run has at most a few hundred thousand calls; clarity beats indexes here).

All of it runs on one asyncio loop and no method awaits, so no lock is needed.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

__all__ = [
    "Call",
    "CrmAction",
    "Delivery",
    "Ledger",
    "Recovery",
    "Violation",
    "ViolationKind",
]


@dataclass(frozen=True, kw_only=True)
class Call:
    """One call to a fake API, recorded when it finished (however it finished)."""

    at: float
    """Loop time (``loop.time()``) when the call started."""
    wall: float
    """UNIX time when the call started, for humans and logs."""
    duration: float
    service: str
    operation: str
    caller: str
    """The worker id, or the asyncio task's name when no worker is set."""
    job_id: int | None
    subject: str
    """What the call is about; faults and violations are keyed by (service, subject)."""
    idempotency_key: str | None
    args: dict[str, Any]
    outcome: str
    """How it ended: ``ok`` (took effect or answered), ``replayed`` (an idempotency key matched an
    earlier call: same answer, no new effect), ``rate_limited`` (429), ``timeout_before`` (no
    effect), ``timeout_after`` (the effect was applied), ``invalid`` (400: can never succeed),
    ``key_reused`` (422: a key sent again with other arguments), ``not_found`` (404),
    ``crashed`` (the worker was killed before the answer), ``cancelled`` (the calling task was
    cancelled mid-call) or ``error`` (anything else: a bug in the fakes, a wrong argument type)."""
    result: str | None = None
    """What the API answered (message id, reply, sentiment, action id); None on error."""
    error: str | None = None
    """The exception's type name when the call raised."""
    in_transaction: bool = False
    site: str | None = None
    """The line of the caller's own code that made the call ("solution.py:34 in ...")."""


@dataclass(frozen=True, kw_only=True)
class Delivery:
    """An email that really went out. Two for one recipient is the bug the kata is about."""

    message_id: str
    to: str
    body: str
    key: str | None
    job_id: int | None
    caller: str
    at: float


@dataclass(frozen=True, kw_only=True)
class CrmAction:
    """A CRM side effect that really happened (a sales call booked, an offer sent...)."""

    action_id: str
    email: str
    sentiment: str
    action: str
    key: str | None
    job_id: int | None
    caller: str
    at: float


class ViolationKind(StrEnum):
    """Mistakes a solution can make against an external API, each detected as it happens."""

    CALL_IN_TRANSACTION = "call_in_transaction"
    RETRY_BEFORE_RETRY_AFTER = "retry_before_retry_after"
    RETRY_AFTER_PERMANENT_ERROR = "retry_after_permanent_error"
    IDEMPOTENCY_KEY_REUSED = "idempotency_key_reused"
    WAIT_IN_TRANSACTION = "wait_in_transaction"
    """A backoff wait (``asyncio.sleep``) while holding a transaction; the grader's sleep guard
    reports it (``Referee.record_wait_in_transaction``), since no API call is involved."""


@dataclass(frozen=True, kw_only=True)
class Violation:
    """One mistake, with a ``detail`` sentence that names it and gives the evidence."""

    kind: ViolationKind
    service: str
    subject: str
    caller: str
    job_id: int | None
    at: float
    detail: str

    def __str__(self) -> str:
        return self.detail


@dataclass(frozen=True, kw_only=True)
class Recovery:
    """The harness took a job from a worker whose claim had expired and put it back in the queue
    (loop time ``at``). Only this excuses a second worker for a 429 told to the first one."""

    job_id: int
    worker: str | None
    at: float


@dataclass
class Ledger:
    """Append-only record of one run. ``reset()`` starts a new run with the same object."""

    calls: list[Call] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    actions: list[CrmAction] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    recoveries: list[Recovery] = field(default_factory=list)

    def reset(self) -> None:
        self.calls.clear()
        self.deliveries.clear()
        self.actions.clear()
        self.violations.clear()
        self.recoveries.clear()

    def record_recovery(self, job_id: int, worker: str | None, *, at: float | None = None) -> None:
        """Note that the harness returned ``job_id``, claimed by ``worker``, to the queue: at
        loop time ``at``, when the statement that did it was sent (by the time the harness hears
        back, another worker may already have claimed the job and called an API for it)."""
        at = asyncio.get_running_loop().time() if at is None else at
        self.recoveries.append(Recovery(job_id=job_id, worker=worker, at=at))

    # -- queries --------------------------------------------------------------------------------

    def deliveries_to(self, email: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.to == email]

    def duplicate_deliveries(self) -> dict[str, int]:
        """Recipient -> number of emails delivered, for recipients who got more than one."""
        return _more_than_once(d.to for d in self.deliveries)

    def duplicate_actions(self) -> dict[str, int]:
        """Customer email -> number of CRM actions, for customers routed more than once."""
        return _more_than_once(a.email for a in self.actions)

    def calls_for(
        self,
        service: str | None = None,
        subject: str | None = None,
        operation: str | None = None,
    ) -> list[Call]:
        """Calls matching every filter given, in the order they finished."""
        return [
            c
            for c in self.calls
            if (service is None or c.service == service)
            and (subject is None or c.subject == subject)
            and (operation is None or c.operation == operation)
        ]

    def violations_of(self, kind: ViolationKind | str) -> list[Violation]:
        kind = ViolationKind(kind)
        return [v for v in self.violations if v.kind is kind]

    def errors_by_type(self) -> dict[str, int]:
        """Exception type name -> how many calls raised it."""
        return dict(Counter(c.error for c in self.calls if c.error is not None))

    def summary(self) -> dict[str, Any]:
        """Counters for dashboards: plain data, cheap enough to compute on every redraw."""
        return {
            "calls": len(self.calls),
            "calls_by_service": dict(Counter(c.service for c in self.calls)),
            "outcomes": dict(Counter(c.outcome for c in self.calls)),
            "errors": self.errors_by_type(),
            "deliveries": len(self.deliveries),
            "duplicate_deliveries": sum(n - 1 for n in self.duplicate_deliveries().values()),
            "actions": len(self.actions),
            "duplicate_actions": sum(n - 1 for n in self.duplicate_actions().values()),
            "violations": len(self.violations),
            "violations_by_kind": dict(Counter(v.kind.value for v in self.violations)),
        }


def _more_than_once(values: Iterable[str]) -> dict[str, int]:
    counts = Counter(values)
    return {value: n for value, n in counts.items() if n > 1}
