"""Task G's race, choreographed: workers that read the account's state all read the same one,
every run, before any of them writes.

    race = ReadRace(kata.database, workers)
    with race.installed():
        tasks = [... each worker reserves and sends ...]
        await race.settled(tasks)       # every racer paused after its read (or it never reads)
        race.release()

Each racer is paused right after its first statement that reads ``send_rate`` or ``send_slots``
without writing. Once every racer is paused (or has written, or returned, or is held by a lock a
paused racer holds: nothing moves for a moment), all of them go on at once. A limiter that
re-checks what it read in its write (a compare-and-set on ``version``, a unique slot) hands
them one moment each; one that writes what it computed from its read hands several the same.

A read that locks its row is not punished: the first racer that reads holds the others off
(``FOR UPDATE`` on PostgreSQL, SQLite's write lock in ``transaction()``), they are let go when
nothing has moved for ``QUIET`` seconds, and they reserve one after the other. The length of that
wait decides nothing: the paused racer cannot release its lock while it is paused.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..scope import current
from ..sql.backends import Result
from ..sql.database import Database
from ..sql.sqlparams import is_write, live_words

__all__ = ["QUIET", "ReadRace", "on_the_account"]

#: Seconds without any racer pausing, writing or returning after which the racers are let go.
QUIET = 0.1

_ACCOUNT_TABLES = {"SEND_RATE", "SEND_SLOTS"}


def on_the_account(sql: str) -> bool:
    """Whether ``sql`` reads or writes the limiter's tables."""
    return bool(_ACCOUNT_TABLES & set(live_words(sql)))


class ReadRace:
    """Pause each of ``workers`` after its first read of the account's state, until released."""

    def __init__(self, database: Database, workers: Sequence[str]) -> None:
        self.database = database
        self.workers = set(workers)
        #: worker -> its first read of the account's state.
        self.reads: dict[str, str] = {}
        #: The racers that read before the others were let go: they raced.
        self.raced: list[str] = []
        #: Racers that wrote the account's state before reading it (nothing to pause).
        self.wrote: set[str] = set()
        self._go = asyncio.Event()
        self._moved = asyncio.Event()

    @contextmanager
    def installed(self) -> Iterator[ReadRace]:
        with self.database.watching(self._after_statement):
            yield self

    async def _after_statement(self, sql: str, result: Result) -> None:
        worker = current().worker_id
        if worker not in self.workers or worker in self.reads or worker in self.wrote:
            return
        if not on_the_account(sql):
            return
        self._moved.set()
        if is_write(sql):
            self.wrote.add(worker)
            return
        self.reads[worker] = " ".join(sql.split())
        if not self._go.is_set():
            self.raced.append(worker)
            await self._go.wait()

    async def settled(self, tasks: Mapping[str, asyncio.Task[Any]]) -> None:
        """Until every racer (``tasks``: by worker) has paused, written or finished, or nothing
        moved for ``QUIET`` seconds."""
        while True:
            waiting = [
                task
                for worker, task in tasks.items()
                if worker not in self.reads and worker not in self.wrote and not task.done()
            ]
            if not waiting:
                return
            self._moved.clear()
            moved = asyncio.ensure_future(self._moved.wait())
            done, _ = await asyncio.wait(
                [moved, *waiting], timeout=QUIET, return_when=asyncio.FIRST_COMPLETED
            )
            moved.cancel()
            if not done:
                return

    def release(self) -> None:
        self._go.set()
