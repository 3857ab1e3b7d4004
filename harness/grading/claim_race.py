"""The claim race, choreographed: a worker is paused between its read and its write while the row
it read changes under it — every run, not when twenty workers happen to collide.

    race = ClaimRace(kata.database, worker="worker-1", change=RowChange.CLAIMED, pause_at=1)
    with race.installed():
        job = await kata.call("claim_next_job", "worker-1", worker="worker-1")

``pause_at=k`` pauses the worker right after the k-th statement of its claim that read job rows
without writing (``SELECT ... FROM jobs``, ``Job.get``, a ``FOR UPDATE`` read). While it is paused,
another worker changes the first job that read returned: claims it, claims it and returns it to
the queue for later (as a rate-limited attempt does), or fails or completes it. Then the paused
worker goes on, and its claim is judged against what really happened.

A read that protects its row is not punished: if the paused worker holds a lock on the row (a
``FOR UPDATE`` inside a transaction on PostgreSQL, or SQLite's write lock inside
``transaction()``), the change cannot happen while it is paused; it is given up after a short lock
wait (the paused worker cannot release the lock, so that wait decides nothing by timing) and the
claim is judged as a lone worker's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from ..scope import acting_as, current
from ..sql.backends import Result
from ..sql.database import Database
from ..sql.orm import utcnow
from ..sql.sqlparams import is_write

__all__ = ["ClaimRace", "RowChange", "reads_of_one_claim"]

#: How long the interfering worker waits for a lock the paused worker holds. The paused worker
#: cannot release it while paused, so the length decides nothing; it only bounds the wait.
_LOCK_WAIT_MS = 150


class RowChange(StrEnum):
    """What happens to the row between the paused worker's read and its write."""

    CLAIMED = "claimed"
    REQUEUED = "requeued"
    FAILED = "failed"
    COMPLETED = "completed"

    def story(self, job_id: int, other: str) -> str:
        return {
            RowChange.CLAIMED: f"{other} claimed job {job_id}",
            RowChange.REQUEUED: (
                f"{other} claimed job {job_id}, got a 429 and returned it to the queue with "
                "run_after an hour away"
            ),
            RowChange.FAILED: f"{other} claimed job {job_id} and failed it",
            RowChange.COMPLETED: f"{other} claimed job {job_id} and completed it",
        }[self]


#: The row's new values for each change (the parameters come from ``_change_row``).
_CHANGES: dict[RowChange, str] = {
    RowChange.CLAIMED: "status = 'running', worker_id = ?, claimed_at = ?",
    RowChange.REQUEUED: "run_after = ?, attempts = attempts + 1, last_error = ?",
    RowChange.FAILED: "status = 'failed', worker_id = ?, last_error = ?",
    RowChange.COMPLETED: "status = 'completed', step = 'done', worker_id = ?",
}


@dataclass
class Intrusion:
    """The change made while the worker was paused (``applied=False``: its read held a lock)."""

    job_id: int
    change: RowChange
    applied: bool
    read_sql: str


def _job_ids(sql: str, result: Result) -> list[int]:
    if "jobs" not in sql.lower():
        return []
    return [row["id"] for row in result.rows if isinstance(row.get("id"), int)]


def _is_job_read(sql: str, result: Result) -> bool:
    return not is_write(sql) and bool(_job_ids(sql, result))


class ClaimRace:
    """Pause ``worker`` after its ``pause_at``-th read of job rows; change the first row read."""

    def __init__(
        self,
        database: Database,
        *,
        worker: str,
        change: RowChange,
        pause_at: int = 1,
        other: str = "worker-2",
    ) -> None:
        self.database = database
        self.worker = worker
        self.change = change
        self.pause_at = pause_at
        self.other = other
        self.reads = 0
        self.intrusion: Intrusion | None = None

    @contextmanager
    def installed(self) -> Iterator[ClaimRace]:
        with self.database.watching(self._after_statement):
            yield self

    async def _after_statement(self, sql: str, result: Result) -> None:
        if current().worker_id != self.worker or not _is_job_read(sql, result):
            return
        self.reads += 1
        if self.reads != self.pause_at or self.intrusion is not None:
            return
        job_id = _job_ids(sql, result)[0]
        # Another task: it must not run inside the paused worker's transaction, if it holds one.
        self.intrusion = await asyncio.create_task(self._intrude(job_id, sql))

    async def _intrude(self, job_id: int, read_sql: str) -> Intrusion:
        with acting_as(self.other):
            applied = await self._change_row(job_id)
        return Intrusion(job_id=job_id, change=self.change, applied=applied, read_sql=read_sql)

    async def _change_row(self, job_id: int) -> bool:
        now = utcnow()
        assignments = _CHANGES[self.change]
        params: list[Any]
        if self.change is RowChange.CLAIMED:
            params = [self.other, now]
        elif self.change is RowChange.REQUEUED:
            params = [now + timedelta(hours=1), "RateLimitError: 429 Too Many Requests"]
        elif self.change is RowChange.FAILED:
            params = [self.other, "InvalidEmailError: 400 Bad Request"]
        else:
            params = [self.other]
        sql = (
            f"UPDATE jobs SET {assignments}, updated_at = ? "
            "WHERE id = ? AND status = 'pending' RETURNING id"
        )
        database = self.database
        async with database.connection() as conn:
            if database.dialect == "postgresql":
                await database.run_on(conn, "BEGIN")
                try:
                    await database.run_on(conn, f"SET LOCAL lock_timeout = '{_LOCK_WAIT_MS}ms'")
                    changed = await database.run_on(conn, sql, [*params, now, job_id])
                    await database.run_on(conn, "COMMIT")
                except Exception as error:
                    await database.run_on(conn, "ROLLBACK")
                    if _is_lock_wait(error):
                        return False
                    raise
                return bool(changed.rows)
            await database.run_on(conn, f"PRAGMA busy_timeout = {_LOCK_WAIT_MS}")
            try:
                changed = await database.run_on(conn, sql, [*params, now, job_id])
            except Exception as error:
                if _is_lock_wait(error):
                    return False
                raise
            finally:
                busy = int(database.config.busy_timeout * 1000)
                await database.run_on(conn, f"PRAGMA busy_timeout = {busy}")
            return bool(changed.rows)


def _is_lock_wait(error: BaseException) -> bool:
    text = str(error).lower()
    return "lock timeout" in text or "database is locked" in text or "locknotavailable" in text


async def reads_of_one_claim(database: Database, worker: str, claim: Any) -> int:
    """How many reads of job rows one undisturbed claim makes: the pause points to try."""
    counter = ClaimRace(database, worker=worker, change=RowChange.CLAIMED, pause_at=0)
    with counter.installed():
        await claim()
    return counter.reads
