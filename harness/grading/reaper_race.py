"""Task F's races, choreographed: the same interleaving every run, never left to the scheduler.

A reaper that reads the stalled jobs and then writes them has a gap between the two. Two things
can happen in it, and each is forced here:

* ``ReaperPause`` pauses the reaper right after its ``pause_at``-th read of job rows and, while
  it is paused, changes the first stalled job that read returned: its live worker renews the
  claim, finishes the job, or the job is taken over by another worker (``Change``); or a second
  reaper (the candidate's own function, as ``reaper-2``) runs from start to end. Then the paused
  reaper goes on, and what it wrote is judged.
* ``renewal_held`` renews one stalled job's claim in a transaction the harness keeps open, and
  commits it only once the reaper waits for it (PostgreSQL: a backend blocked by the renewal's
  row lock; SQLite: a write, or a ``BEGIN``, of the reaper's sent while the renewal holds the
  write lock), so that the reaper's write runs on the renewed row. A single
  ``UPDATE ... WHERE id IN (SELECT ...)`` has no gap between statements, but on PostgreSQL its
  sub-select is not evaluated again for a row that changed while the UPDATE waited for its lock.

A reaper whose read protects its rows is not punished: if the paused reaper holds a lock on them
(``FOR UPDATE`` in a transaction on PostgreSQL, SQLite's write lock inside ``transaction()``),
the change cannot happen while it is paused; it is given up after a short lock wait (the paused
reaper cannot release the lock, so the wait decides nothing by timing) and the reaper is judged
as a lone one. The harness's own lease recovery never runs in Task F's tests.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..scope import acting_as, current, scoped
from ..sql.backends import Result
from ..sql.models import Job
from ..sql.orm import utcnow
from ..sql.sqlparams import is_write, live_words, outer_where
from .kit import Kata
from .stalled import LEASE

__all__ = [
    "Change",
    "HeldRenewal",
    "Intrusion",
    "ReaperPause",
    "ReaperStatements",
    "reads_of_one_reap",
    "renewal_held",
    "statements_of",
    "write_shape",
]

#: How long the harness waits for a lock the paused reaper holds. The paused reaper cannot
#: release it while paused, so the length decides nothing; it only bounds the wait.
_LOCK_WAIT_MS = 150
#: How long a second reaper may take while the first is paused, before the first is let go
#: anyway (it can only be waiting for something the paused one holds); then both finish.
_SECOND_REAPER_PATIENCE = 5.0
#: How long the held renewal waits for the reaper to wait for it (a reaper that never touches
#: the row ends before; this is only a bound).
_HELD_PATIENCE = 10.0
_POLL = 0.005


class Change(StrEnum):
    """What happens to a stalled job between the reaper's read and its write."""

    RENEWED = "renewed"
    COMPLETED = "completed"
    TAKEN_OVER = "taken-over"

    def story(self, job: Job) -> str:
        worker = job.worker_id or "its worker"
        return {
            Change.RENEWED: (
                f"{worker}, alive but slow, renewed its claim on job {job.id} (claimed_at now)"
            ),
            Change.COMPLETED: f"{worker}, alive but slow, completed job {job.id}",
            Change.TAKEN_OVER: (
                f"the queue had taken job {job.id} back and worker-9 claimed it (running, "
                "attempts + 1, a fresh claimed_at)"
            ),
        }[self]


#: The row's new values for each change; parameters: now, now (and the id), from ``_change_row``.
_CHANGES: dict[Change, str] = {
    Change.RENEWED: "claimed_at = ?, updated_at = ?",
    Change.COMPLETED: "status = 'completed', step = 'done', action_id = 'act-1', updated_at = ?",
    Change.TAKEN_OVER: (
        "worker_id = 'worker-9', claimed_at = ?, attempts = attempts + 1, updated_at = ?"
    ),
}


@dataclass
class Intrusion:
    """What happened while the reaper was paused (``applied=False``: its read held a lock)."""

    job: Job
    read_sql: str
    applied: bool
    change: Change | None = None
    #: The row as the change left it (a change), for the judge to compare with.
    left: Job | None = None
    #: The second reaper, when it was one: its call (done, unless it waited past its patience).
    second: asyncio.Task[Any] | None = None


def _job_ids(sql: str, result: Result) -> list[int]:
    if "JOBS" not in live_words(sql):
        return []
    return [row["id"] for row in result.rows if isinstance(row.get("id"), int)]


def is_job_read(sql: str, result: Result) -> bool:
    return not is_write(sql) and bool(_job_ids(sql, result))


class ReaperPause:
    """Pause ``reaper`` after its ``pause_at``-th read of job rows; then change the first of
    ``targets`` that read returned (``change``), or run a second reaper (``change=None``)."""

    def __init__(
        self,
        kata: Kata,
        *,
        pause_at: int,
        targets: dict[int, Job],
        change: Change | None,
        reaper: str = "reaper-1",
        lease: float = LEASE,
    ) -> None:
        self.kata = kata
        self.pause_at = pause_at
        self.targets = targets
        self.change = change
        self.reaper = reaper
        self.lease = lease
        self.reads = 0
        self.intrusion: Intrusion | None = None

    @contextmanager
    def installed(self) -> Iterator[ReaperPause]:
        with self.kata.database.watching(self._after_statement):
            yield self

    async def _after_statement(self, sql: str, result: Result) -> None:
        if current().worker_id != self.reaper or not is_job_read(sql, result):
            return
        self.reads += 1
        if self.reads != self.pause_at or self.intrusion is not None:
            return
        read = [job_id for job_id in _job_ids(sql, result) if job_id in self.targets]
        if not read:
            return
        job = self.targets[read[0]]
        # Another task: it must not run inside the paused reaper's transaction, if it holds one.
        self.intrusion = await asyncio.create_task(self._intrude(job, sql))

    async def _intrude(self, job: Job, read_sql: str) -> Intrusion:
        if self.change is not None:
            with acting_as("worker-9" if self.change is Change.TAKEN_OVER else job.worker_id):
                left = await _change_row(self.kata, job.id, self.change)
            return Intrusion(job, read_sql, left is not None, change=self.change, left=left)
        with scoped(worker_id=None, latency=False):
            if await _locked(self.kata, list(self.targets)):
                return Intrusion(job, read_sql, applied=False)
        second = asyncio.create_task(
            self.kata.call("recover_stalled_jobs", self.lease, worker="reaper-2")
        )
        await asyncio.wait({second}, timeout=_SECOND_REAPER_PATIENCE)
        return Intrusion(job, read_sql, applied=True, second=second)


async def _change_row(kata: Kata, job_id: int, change: Change) -> Job | None:
    """Make ``change`` to the job, if the paused reaper does not hold its row; the row as the
    change left it (None: the row was held)."""
    now = utcnow()
    assignments = _CHANGES[change]
    params = [now] * assignments.count("?")
    sql = f"UPDATE jobs SET {assignments} WHERE id = ? AND status = 'running' RETURNING *"
    database = kata.database
    async with database.connection() as conn:
        if database.dialect == "postgresql":
            await database.run_on(conn, "BEGIN")
            try:
                await database.run_on(conn, f"SET LOCAL lock_timeout = '{_LOCK_WAIT_MS}ms'")
                changed = await database.run_on(conn, sql, [*params, job_id])
                await database.run_on(conn, "COMMIT")
            except Exception as error:
                await database.run_on(conn, "ROLLBACK")
                if _is_lock_wait(error):
                    return None
                raise
            return Job.from_row(changed.rows[0]) if changed.rows else None
        await database.run_on(conn, f"PRAGMA busy_timeout = {_LOCK_WAIT_MS}")
        try:
            changed = await database.run_on(conn, sql, [*params, job_id])
        except Exception as error:
            if _is_lock_wait(error):
                return None
            raise
        finally:
            busy = int(database.config.busy_timeout * 1000)
            await database.run_on(conn, f"PRAGMA busy_timeout = {busy}")
        return Job.from_row(changed.rows[0]) if changed.rows else None


async def _locked(kata: Kata, job_ids: list[int]) -> bool:
    """Whether another transaction (the paused reaper's) holds a lock that a second reaper
    would wait for: a row lock on one of ``job_ids`` (PostgreSQL), the write lock (SQLite)."""
    database = kata.database
    async with database.connection() as conn:
        if database.dialect == "postgresql":
            marks = ", ".join("?" for _ in job_ids)
            await database.run_on(conn, "BEGIN")
            try:
                await database.run_on(
                    conn, f"SELECT id FROM jobs WHERE id IN ({marks}) FOR UPDATE NOWAIT", job_ids
                )
            except Exception as error:
                if _is_lock_wait(error):
                    return True
                raise
            finally:
                await database.run_on(conn, "ROLLBACK")
            return False
        await database.run_on(conn, f"PRAGMA busy_timeout = {_LOCK_WAIT_MS}")
        try:
            await database.run_on(conn, "BEGIN IMMEDIATE")
        except Exception as error:
            if _is_lock_wait(error):
                return True
            raise
        else:
            await database.run_on(conn, "ROLLBACK")
        finally:
            busy = int(database.config.busy_timeout * 1000)
            await database.run_on(conn, f"PRAGMA busy_timeout = {busy}")
        return False


def _is_lock_wait(error: BaseException) -> bool:
    text = f"{type(error).__name__} {error}".lower()
    return any(
        sign in text
        for sign in ("lock timeout", "database is locked", "locknotavailable", "could not obtain")
    )


async def reads_of_one_reap(kata: Kata, targets: dict[int, Job]) -> int:
    """How many reads of job rows one undisturbed reaper call makes: the pause points to try."""
    counter = ReaperPause(kata, pause_at=0, targets=targets, change=None)
    with counter.installed():
        await kata.call("recover_stalled_jobs", LEASE, worker="reaper-1")
    return counter.reads


# --- the renewal the reaper's write waits for ---------------------------------------------------


@dataclass
class HeldRenewal:
    """A renewal of ``job``'s claim, made in a transaction the harness holds open."""

    kata: Kata
    job: Job
    conn: Any
    reaper: str
    #: Whether the reaper was seen waiting for the renewal before it was committed.
    waited: bool = False
    committed: bool = False
    #: The row as the renewal left it (its own RETURNING: the reaper may write it right after).
    left: Job | None = None
    _pid: int | None = None

    async def commit_when_waited_for(self, reaper: asyncio.Task[Any]) -> None:
        """Commit the renewal once the reaper waits for it, or has ended without touching it."""
        deadline = time.monotonic() + _HELD_PATIENCE
        while not reaper.done() and time.monotonic() < deadline:
            if await self._waited_for():
                self.waited = True
                break
            await asyncio.sleep(_POLL)
        await self.kata.database.run_on(self.conn, "COMMIT")
        self.committed = True

    async def _waited_for(self) -> bool:
        database = self.kata.database
        if database.dialect == "postgresql":
            blocked = await database.run_on(
                self.conn,
                "SELECT count(*) AS n FROM pg_locks "
                "WHERE NOT granted AND ? = ANY(pg_blocking_pids(pid))",
                [self._pid],
            )
            return bool(blocked.rows[0]["n"])
        sent = database.in_flight.get(self.reaper)
        if sent is None:
            return False
        words = live_words(sent[0])
        return is_write(sent[0]) or (bool(words) and words[0] == "BEGIN")


@asynccontextmanager
async def renewal_held(
    kata: Kata, job: Job, reaper: str = "reaper-1"
) -> AsyncIterator[HeldRenewal]:
    """Renew ``job``'s claim as its worker, in a transaction held open for the block (commit it
    with ``commit_when_waited_for``; a block that ends otherwise rolls it back)."""
    database = kata.database
    async with database.connection() as conn:
        with acting_as(job.worker_id):
            held = HeldRenewal(kata, job, conn, reaper)
            if database.dialect == "postgresql":
                await database.run_on(conn, "BEGIN")
                pid = await database.run_on(conn, "SELECT pg_backend_pid() AS pid")
                held._pid = int(pid.rows[0]["pid"])
            else:
                await database.run_on(conn, "BEGIN IMMEDIATE")
            now = utcnow()
            try:
                renewed = await database.run_on(
                    conn,
                    "UPDATE jobs SET claimed_at = ?, updated_at = ? "
                    "WHERE id = ? AND status = 'running' RETURNING *",
                    [now, now, job.id],
                )
                held.left = Job.from_row(renewed.rows[0])
                yield held
            finally:
                if not held.committed:
                    await database.run_on(conn, "ROLLBACK")


# --- what the reaper sent -----------------------------------------------------------------------


@dataclass
class _Statement:
    sql: str
    params: tuple[Any, ...]
    ids: tuple[int, ...]
    writes: bool
    rowcount: int | None


@dataclass
class ReaperStatements:
    """Every statement ``reaper`` sent, with the job ids it named or returned: to word a
    diagnosis the behaviour already gave, never a verdict."""

    reaper: str
    sent: list[_Statement] = field(default_factory=list)

    def observe(self, at: float, caller: str, sql: str, params: Any, *rest: Any) -> None:
        if caller != self.reaper:
            return
        rows = rest[0] if rest else None
        rowcount = rest[1] if len(rest) > 1 else None
        ids = [p for p in params if isinstance(p, int) and not isinstance(p, bool)]
        ids += [row["id"] for row in rows or () if isinstance(row.get("id"), int)]
        self.sent.append(_Statement(sql, tuple(params), tuple(ids), is_write(sql), rowcount))

    def write_of(self, job_id: int) -> str | None:
        """The reaper's UPDATE that changed ``job_id`` (the last UPDATE that changed a row, when
        none names it)."""
        updates = [s for s in self.sent if live_words(s.sql)[:2] == ["UPDATE", "JOBS"]]
        changed = [s for s in updates if s.rowcount]
        naming = [s for s in changed if job_id in s.ids]
        chosen = naming or changed
        return " ".join(chosen[-1].sql.split()) if chosen else None

    def read_before_writing(self) -> bool:
        """Whether the reaper read job rows before its first write."""
        for statement in self.sent:
            if statement.writes:
                return False
            if "JOBS" in live_words(statement.sql):
                return True
        return False


@contextmanager
def statements_of(kata: Kata, reaper: str = "reaper-1") -> Iterator[ReaperStatements]:
    seen = ReaperStatements(reaper)
    kata.database.observers.append(seen.observe)
    try:
        yield seen
    finally:
        kata.database.observers.remove(seen.observe)


def write_shape(sql: str | None) -> str | None:
    """How the reaper's write was guarded, in words, read from its statement; None when it
    re-checks both the status and the claim in its own WHERE."""
    if sql is None:
        return None
    words = live_words(sql)
    where = outer_where(words)
    sets = words[words.index("SET") + 1 : words.index("WHERE")] if "WHERE" in words else words
    if {"EMAIL", "CAMPAIGN_ID", "CREATED_AT"} <= set(sets):
        return (
            "it saved the whole job object it had read (job.save()), which writes back every "
            "field it read, the old claim and status too"
        )
    status, claim = "STATUS" in where, "CLAIMED_AT" in where
    if status and claim:
        return None
    if status:
        return "its write re-checks the status but not the claim"
    if claim:
        return "its write re-checks the claim but not the status"
    if "SELECT" in words:
        return (
            "its UPDATE's own WHERE re-checks neither the status nor the claim, only its "
            "sub-select's does"
        )
    return "its write re-checks neither the status nor the claim"
