"""The referee of the fake APIs: it watches each caller and records ``Violation``s in the ledger.

The call still proceeds, so that a test can finish and report every mistake, not only the first:

* calling while the task holds a database transaction;
* calling again for the same (service, subject) before a ``retry_after`` it was given had passed;
* calling again for a subject that already failed permanently (``InvalidEmailError``), unless the
  worker that was told died since (``CrashPlan.crashes_between``): the next one cannot know;
* reusing an idempotency key with different arguments;
* waiting (``asyncio.sleep``) inside a transaction, which the grader's sleep guard reports here.
"""

from __future__ import annotations

import asyncio
import time

from ..exceptions import InvalidEmailError, RateLimitError
from ..ownership import code_site
from ..scope import caller_name, current
from ..sql.transactions import current_transaction
from .attempts import Attempt
from .ledger import Ledger, Violation, ViolationKind

__all__ = ["RETRY_AFTER_TOLERANCE", "Referee"]

RETRY_AFTER_TOLERANCE = max(0.001, time.get_clock_info("monotonic").resolution)
"""How early a retry may arrive and still count as patient. asyncio wakes a sleep up to one clock
tick early (15.6 ms on Windows), and a correct solution must never be flagged."""


class Referee:
    """Polices the callers of one set of fake APIs; what it sees goes to their ``ledger``."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.reset()

    def reset(self) -> None:
        #: (service, subject) -> (loop time of the 429, its retry_after).
        self._retry_after: dict[tuple[str, str], tuple[float, float]] = {}
        #: (service, subject) -> (loop time of the latest permanent failure, what it was).
        self._permanent: dict[tuple[str, str], tuple[float, str]] = {}

    def check(self, attempt: Attempt) -> None:
        """Judge a call as it starts."""
        what = attempt.describe()
        tx = current_transaction()
        if attempt.in_transaction and tx is not None:
            # The evidence only (which call, where, which transaction): the grader's diagnosis
            # adds why it is wrong and what to do, once.
            site = code_site()
            self.violate(
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
                self.violate(
                    attempt,
                    ViolationKind.RETRY_BEFORE_RETRY_AFTER,
                    f"{what} was retried {waited:.3f} s after a 429 that said "
                    f"retry_after={retry_after:.3f} s (by {_who(attempt)})",
                )
        if (failed := self._permanent.get(subject)) is not None and not _crashed_since(
            attempt.job_id, failed[0]
        ):
            failed_at, error = failed
            self.violate(
                attempt,
                ViolationKind.RETRY_AFTER_PERMANENT_ERROR,
                f"{what} was called again {attempt.at - failed_at:.3f} s after it failed "
                f"permanently with {error} (by {_who(attempt)}); a permanent error never succeeds "
                "on retry",
            )

    def remember_error(self, attempt: Attempt, exc: BaseException, now: float) -> None:
        """What a failed call tells the next one: wait (429), or never again (permanent)."""
        subject = (attempt.service, attempt.subject)
        if isinstance(exc, RateLimitError):
            self._retry_after[subject] = (now, exc.retry_after)
        elif isinstance(exc, InvalidEmailError):
            # The latest failure: a retry is excused only by a crash after the failure it repeats.
            self._permanent[subject] = (now, f"InvalidEmailError ({exc.reason})")

    def key_reused(self, attempt: Attempt, how: str) -> None:
        """``how``: where the arguments differ from the ones the key was first used with."""
        self.violate(
            attempt,
            ViolationKind.IDEMPOTENCY_KEY_REUSED,
            f"{attempt.operation} reused idempotency key {attempt.key!r} with different "
            f"arguments ({how})",
        )

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
                at=asyncio.get_running_loop().time(),
                detail=f"asyncio.sleep({seconds:g}) at {where}, by {who}, inside its transaction",
            )
        )

    def violate(self, attempt: Attempt, kind: ViolationKind, detail: str) -> None:
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
    plan = current().crash_plan
    return plan is not None and plan.crashes_between(job_id, since) > 0


def _who(attempt: Attempt) -> str:
    return attempt.caller if attempt.job_id is None else f"{attempt.caller} on job {attempt.job_id}"
