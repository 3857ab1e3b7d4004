"""The queue's own SQL, in one place: how the harness claims a job, counts jobs by status and
returns expired claims to the queue. The runner's monitor, the grader (Task D's runs never depend
on the candidate's claim), the drills' own correct code and ``setup_db.py`` all read it here.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .database import Database

__all__ = ["COUNT_BY_STATUS", "RECOVER_EXPIRED", "claim_params", "claim_sql", "count_by_status"]

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


def claim_sql(dialect: str) -> str:
    """The claim for ``dialect``: on PostgreSQL the sub-select skips rows other workers have
    locked (``FOR UPDATE SKIP LOCKED``); SQLite's single writer needs no lock."""
    return _CLAIM.format(lock=" FOR UPDATE SKIP LOCKED" if dialect == "postgresql" else "")


def claim_params(worker_id: str, now: datetime) -> list[object]:
    return [worker_id, now, now, now]


async def count_by_status(database: Database) -> dict[str, int]:
    """Jobs per status (only the statuses that have jobs)."""
    result = await database.run(COUNT_BY_STATUS)
    return {str(row["status"]): int(row["n"]) for row in result.rows}
