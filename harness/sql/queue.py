"""The queue's own SQL, in one place: how the harness claims a job, counts jobs by status and
returns expired claims to the queue (forever, or counting them and giving up on a poison job).
The runner's monitor, the grader (Task D's runs never depend on the candidate's claim), the
drills' own correct code and ``setup_db.py`` all read it here.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from .models import MAX_ATTEMPTS

if TYPE_CHECKING:
    from .database import Database

__all__ = [
    "COUNT_BY_STATUS",
    "RECOVER_COUNTING",
    "RECOVER_EXPIRED",
    "claim_params",
    "claim_sql",
    "count_by_status",
    "gave_up_error",
    "recover_counting_params",
]

#: Atomic claim of the oldest claimable job: one statement, so no other worker can slip in
#: between the read and the write. Parameters: worker id, now (claimed_at, updated_at, run_after).
_CLAIM = """
UPDATE jobs
   SET status = 'running', worker_id = ?, claimed_at = ?, updated_at = ?
 WHERE id = (
       SELECT id FROM jobs
        WHERE status = 'pending' AND run_after <= ?
        ORDER BY id
        LIMIT 1{lock}
 )
RETURNING *
"""

COUNT_BY_STATUS = "SELECT status, COUNT(*) AS n FROM jobs GROUP BY status"

#: The lease: a running job whose claim was not renewed since the cutoff goes back to pending
#: (its worker died). Parameter: the cutoff. Returns each recovered job's id and last holder.
RECOVER_EXPIRED = (
    "UPDATE jobs SET status = 'pending' WHERE status = 'running' "
    "AND COALESCE(claimed_at, updated_at) < ? RETURNING id, worker_id"
)

#: The lease, counting: the same expired claims, each return counted in ``attempts``; a job whose
#: workers died ``MAX_ATTEMPTS`` times (a poison job: something in it kills whoever runs it) is
#: failed with ``last_error`` instead of being handed to the next worker to kill. Parameters
#: (``recover_counting_params``): the limit, the error, the cutoff. Returns each job's id, last
#: holder and new status (``pending``: recovered; ``failed``: given up).
RECOVER_COUNTING = """
UPDATE jobs
   SET status = CASE WHEN attempts + 1 >= ? THEN 'failed' ELSE 'pending' END,
       last_error = CASE WHEN attempts + 1 >= ? THEN ? ELSE last_error END,
       attempts = attempts + 1
 WHERE status = 'running' AND COALESCE(claimed_at, updated_at) < ?
RETURNING id, worker_id, status
"""


def claim_sql(dialect: str) -> str:
    """The claim for ``dialect``: on PostgreSQL the sub-select skips rows other workers have
    locked (``FOR UPDATE SKIP LOCKED``); SQLite's single writer needs no lock."""
    return _CLAIM.format(lock=" FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else "")


def claim_params(worker_id: str, now: datetime) -> list[object]:
    return [worker_id, now, now, now]


def gave_up_error(limit: int = MAX_ATTEMPTS) -> str:
    """The ``last_error`` of a job the counting recovery gave up on."""
    return (
        f"its worker died {limit} times running it (a lease expired each time): "
        "given up as a poison job"
    )


def recover_counting_params(cutoff: datetime, limit: int = MAX_ATTEMPTS) -> list[object]:
    """``RECOVER_COUNTING``'s parameters: fail a job at its ``limit``-th expired claim."""
    return [limit, limit, gave_up_error(limit), cutoff]


async def count_by_status(database: Database) -> dict[str, int]:
    """Jobs per status (only the statuses that have jobs)."""
    result = await database.run(COUNT_BY_STATUS)
    return {str(row["status"]): int(row["n"]) for row in result.rows}
