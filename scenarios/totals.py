"""The dashboard's totals, checked against the database and the ledger after every run.

A drill that shows a wrong number teaches the wrong lesson, so the last snapshot of every run is
re-counted from the sources of truth once the workers have stopped: jobs by status from the
``jobs`` table, emails and duplicates from the API ledger. Any disagreement is a bug in the
drill and raises ``TotalsMismatch``.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from harness.sql.database import Database
from harness.sql.queue import count_by_status
from harness.world.services import Services

from .snapshot import Snapshot

__all__ = ["Totals", "TotalsMismatch", "verify_totals"]

_STATUSES = ("pending", "running", "completed", "failed")


class TotalsMismatch(AssertionError):
    """The dashboard's totals disagree with the database or the ledger: a bug in the drill."""


@dataclass(frozen=True)
class Totals:
    """What the database and the ledger say, counted independently of the dashboard."""

    jobs: dict[str, int]
    total_jobs: int
    delivered: int
    duplicate_copies: int
    duplicated_recipients: int
    api_calls: int

    def as_dict(self) -> dict[str, object]:
        return {
            **self.jobs,
            "total": self.total_jobs,
            "delivered": self.delivered,
            "duplicate_copies": self.duplicate_copies,
            "duplicated_recipients": self.duplicated_recipients,
            "api_calls": self.api_calls,
        }


async def count_totals(database: Database, services: Services) -> Totals:
    by_status = await count_by_status(database)
    per_recipient = Counter(delivery.to for delivery in services.ledger.deliveries)
    return Totals(
        jobs={status: by_status.get(status, 0) for status in _STATUSES},
        total_jobs=sum(by_status.values()),
        delivered=sum(per_recipient.values()),
        duplicate_copies=sum(n - 1 for n in per_recipient.values() if n > 1),
        duplicated_recipients=sum(1 for n in per_recipient.values() if n > 1),
        api_calls=len(services.ledger.calls),
    )


async def verify_totals(
    snapshot: Snapshot, database: Database, services: Services, *, created: int
) -> Totals:
    """Re-count everything the final ``snapshot`` shows; raise ``TotalsMismatch`` on any
    difference. ``created`` is how many jobs the load queued."""
    totals = await count_totals(database, services)
    problems = [
        f"{status} jobs: dashboard {snapshot.counts.get(status, 0)}, database {n}"
        for status, n in totals.jobs.items()
        if snapshot.counts.get(status, 0) != n
    ]
    if totals.total_jobs != created or snapshot.jobs != created:
        problems.append(
            f"jobs: {created} queued, dashboard says {snapshot.jobs}, database holds "
            f"{totals.total_jobs}"
        )
    for name, shown, counted in (
        ("emails delivered", snapshot.delivered, totals.delivered),
        ("duplicate copies", snapshot.duplicate_copies, totals.duplicate_copies),
        (
            "customers emailed more than once",
            snapshot.duplicated_recipients,
            totals.duplicated_recipients,
        ),
        ("API calls", sum(snapshot.api_calls.values()), totals.api_calls),
    ):
        if shown != counted:
            problems.append(f"{name}: dashboard {shown}, ledger {counted}")
    strangers = {d.to for d in services.ledger.deliveries} - await _job_emails(database)
    if strangers:
        problems.append(f"{len(strangers)} emails went to addresses with no job in this run")
    if problems:
        raise TotalsMismatch(
            "the dashboard's totals disagree with the sources of truth: " + "; ".join(problems)
        )
    return totals


async def _job_emails(database: Database) -> set[str]:
    rows = (await database.run("SELECT email FROM jobs")).rows
    return {str(row["email"]) for row in rows}
