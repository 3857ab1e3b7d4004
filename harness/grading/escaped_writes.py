"""Writes that escaped the transaction they were meant to be part of.

``transaction()`` belongs to the task that opened it (see ``harness.sql.transactions``): a task
started inside the block (``asyncio.gather(...)``, ``asyncio.create_task(...)``) inherits the
scope but not the transaction, and borrows a connection of its own, on which every statement
commits by itself. ``EscapedWrites`` notices such statements as they are sent, on both backends:
what the statement did is observed (which transaction it ran in), never read from the code.

    escaped = EscapedWrites(kata.database)
    with escaped.watching():
        await kata.call("create_campaign_jobs", campaign_id, addresses)
    if escaped.count: ...
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from ..scope import current
from ..sql.database import Database
from ..sql.sqlparams import is_write

__all__ = ["EscapedWrites"]

#: How long ``settle`` waits at most for statements still under way in escaped tasks.
_SETTLE_SECONDS = 10.0


class EscapedWrites:
    """Counts the writes sent from a task that inherited an open transaction but does not hold
    it, and how many of them failed (on SQLite they wait for the write lock the transaction
    holds, and fail with "database is locked")."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self.count = 0
        self.failed = 0
        self.callers: set[str] = set()

    @contextmanager
    def watching(self) -> Iterator[EscapedWrites]:
        self.database.observers.append(self._observe)
        try:
            yield self
        finally:
            self.database.observers.remove(self._observe)

    def _observe(
        self,
        sent: float,
        caller: str,
        sql: str,
        params: Sequence[Any],
        rows: object,
        rowcount: object,
        error: BaseException | None = None,
    ) -> None:
        scope = current()
        if scope.transaction is None or scope.held_transaction() is not None:
            return
        if is_write(sql):
            self.count += 1
            self.failed += error is not None
            self.callers.add(caller)

    async def settle(self) -> None:
        """Wait until no statement of an escaped task is under way: a task that ``gather`` left
        running after another failed still commits, a moment after the call returned."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _SETTLE_SECONDS
        quiet = 0
        while loop.time() < deadline and quiet < 3:
            await asyncio.sleep(0.05)
            busy = any(caller in self.callers for caller in self.database.in_flight)
            quiet = 0 if busy else quiet + 1
