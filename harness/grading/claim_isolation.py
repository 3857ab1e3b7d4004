"""A claim that is safe only because SQLite locks the whole database, noticed from its statements.

    watch = LockReliance(kata.database, worker="worker-1")
    with watch.installed():
        await kata.call("claim_next_job", "worker-1", worker="worker-1")
    if watch.evidence:
        ...  # watch.warning(): what it did, why PostgreSQL double-claims, what to do instead

Inside ``transaction()``, SQLite's ``BEGIN IMMEDIATE`` takes the one write lock first, so a claim
that reads a pending job and then updates it by id alone cannot be overtaken: it passes every
SQLite test. PostgreSQL's READ COMMITTED locks nothing on a plain read, and the same claim hands
one job to two workers. The claim race cannot show it on SQLite (the lock holds the other worker
off), so the statements say it instead: a read of job rows inside a transaction without
``FOR UPDATE``, then, in that transaction, an ``UPDATE jobs`` whose WHERE does not re-check
``status``. Reads outside a transaction, locked reads and compare-and-sets are all left alone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import pairwise

from ..scope import current
from ..sql.backends import Result
from ..sql.database import Database
from ..sql.sqlparams import is_write, live_words, outer_where
from ..sql.transactions import Transaction, current_transaction

__all__ = ["LockReliance", "UnlockedReadThenWrite"]


@dataclass(frozen=True)
class UnlockedReadThenWrite:
    """The two statements of one transaction that make the claim depend on the lock."""

    read_sql: str
    update_sql: str


class LockReliance:
    """Watches ``worker``'s statements for a read-then-update that only a database lock protects."""

    def __init__(self, database: Database, *, worker: str) -> None:
        self.database = database
        self.worker = worker
        self.evidence: UnlockedReadThenWrite | None = None
        # The first unlocked read of job rows in each transaction of the worker's.
        self._unlocked_reads: dict[Transaction, str] = {}

    @contextmanager
    def installed(self) -> Iterator[LockReliance]:
        try:
            with self.database.watching(self._after_statement):
                yield self
        finally:
            self._unlocked_reads.clear()

    async def _after_statement(self, sql: str, result: Result) -> None:
        if self.evidence is not None or current().worker_id != self.worker:
            return
        tx = current_transaction()
        if tx is None:
            return
        read = self._unlocked_reads.get(tx)
        words = live_words(sql)
        if read is None:
            if not is_write(sql) and _reads_job_rows(words, result) and not _locks_rows(words):
                self._unlocked_reads[tx] = sql
            return
        if words[:2] == ["UPDATE", "JOBS"] and not _rechecks_status(words):
            self.evidence = UnlockedReadThenWrite(read_sql=read, update_sql=sql)

    def warning(self) -> str:
        evidence = self.evidence
        assert evidence is not None
        return (
            "claim_next_job is safe only because SQLite locks the whole database (BEGIN "
            "IMMEDIATE): inside transaction() it read a pending job without locking its row "
            f"(`{_short(evidence.read_sql)}`), then updated it without re-checking its status "
            f"(`{_short(evidence.update_sql)}`). On PostgreSQL (READ COMMITTED) a read locks "
            "nothing, so two workers read the same pending job and both claim it — lock the row "
            "(SELECT ... FOR UPDATE SKIP LOCKED), or make the UPDATE a compare-and-set (UPDATE "
            "jobs SET ... WHERE id = ? AND status = 'pending' RETURNING *, and try the next job "
            "when it returns no row)"
        )


def _reads_job_rows(words: list[str], result: Result) -> bool:
    return "JOBS" in words and any(isinstance(row.get("id"), int) for row in result.rows)


def _locks_rows(words: list[str]) -> bool:
    """``FOR UPDATE``, ``FOR NO KEY UPDATE``, ``FOR SHARE``, ``FOR KEY SHARE``."""
    return any(
        word == "FOR" and following in ("UPDATE", "NO", "SHARE", "KEY")
        for word, following in pairwise(words)
    )


def _rechecks_status(words: list[str]) -> bool:
    """Whether the UPDATE's own WHERE names ``status`` (a subquery's WHERE does not count)."""
    return "STATUS" in outer_where(words)


def _short(sql: str, limit: int = 90) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= limit else sql[: limit - 3] + "..."
