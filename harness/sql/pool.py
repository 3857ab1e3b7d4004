"""Connection pools with one interface and one set of statistics on both backends.

PostgreSQL uses psycopg_pool (see ``backends/postgres.py``); aiosqlite has no pool, so
``ConnectionPool`` below is the small one it needs, shaped like psycopg_pool's
``AsyncConnectionPool``: keyword-only configuration checked up front, ``connection()`` that
always gives the connection back, ``getconn``/``putconn``, ``get_stats``/``pop_stats``, and a
``PoolTimeout`` that says how long the caller waited and who held the connections.

Both pools feed a ``PoolMeter``, so that a scenario dashboard reads the same numbers whichever
backend runs: size, in use, waiting, acquisitions, timeouts, total and max wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..exceptions import PoolTimeout

__all__ = ["ConnectionPool", "PoolMeter", "PoolStats"]

C = TypeVar("C")


@dataclass(frozen=True)
class PoolStats:
    """A snapshot of a pool. Counters (acquisitions onwards) run since the last ``pop_stats``."""

    max_size: int
    size: int
    in_use: int
    waiting: int
    acquisitions: int
    timeouts: int
    total_wait: float
    max_wait: float

    @property
    def idle(self) -> int:
        return self.size - self.in_use

    @property
    def mean_wait(self) -> float:
        return self.total_wait / self.acquisitions if self.acquisitions else 0.0

    def as_psycopg_stats(self) -> dict[str, int]:
        """The same figures under psycopg_pool's ``get_stats()`` names (plus ours)."""
        return {
            "pool_max": self.max_size,
            "pool_size": self.size,
            "pool_available": self.idle,
            "requests_waiting": self.waiting,
            "requests_num": self.acquisitions,
            "requests_wait_ms": round(self.total_wait * 1000),
            "requests_errors": self.timeouts,
            "in_use": self.in_use,
            "max_wait_ms": round(self.max_wait * 1000),
        }


class PoolMeter:
    """Counts what happens to a pool. Shared by both pool implementations."""

    def __init__(self, max_size: int) -> None:
        self.max_size = max_size
        self.size = 0
        self.in_use = 0
        self.waiting = 0
        self._reset_counters()

    def _reset_counters(self) -> None:
        self.acquisitions = 0
        self.timeouts = 0
        self.total_wait = 0.0
        self.max_wait = 0.0

    def acquired(self, waited: float) -> None:
        self.in_use += 1
        self.acquisitions += 1
        self.total_wait += waited
        self.max_wait = max(self.max_wait, waited)

    def released(self) -> None:
        self.in_use -= 1

    def timeout_error(self, waited: float, cause: BaseException | None = None) -> PoolTimeout:
        self.timeouts += 1
        self.total_wait += waited
        self.max_wait = max(self.max_wait, waited)
        error = PoolTimeout(
            f"couldn't get a connection after {waited:.2f} s: all {self.in_use} of "
            f"{self.max_size} pooled connections are in use and {self.waiting} callers are "
            "waiting (is a connection held across slow work, such as an API call?)",
            waited=waited,
            max_size=self.max_size,
            in_use=self.in_use,
            waiting=self.waiting,
        )
        error.__cause__ = cause
        return error

    def stats(self) -> PoolStats:
        return PoolStats(
            max_size=self.max_size,
            size=self.size,
            in_use=self.in_use,
            waiting=self.waiting,
            acquisitions=self.acquisitions,
            timeouts=self.timeouts,
            total_wait=self.total_wait,
            max_wait=self.max_wait,
        )

    def pop_stats(self) -> PoolStats:
        snapshot = self.stats()
        self._reset_counters()
        return snapshot


class ConnectionPool(Generic[C]):
    """A fixed-maximum asyncio pool over any connection factory (used for aiosqlite).

    Connections are opened lazily up to ``max_size``. Waiters are served first come, first
    served: a returned connection is handed straight to the oldest waiter, so a burst cannot
    starve an early caller.
    """

    def __init__(
        self,
        connect: Callable[[], Awaitable[C]],
        close: Callable[[C], Awaitable[None]],
        *,
        max_size: int,
        timeout: float,
        check: Callable[[C], bool] | None = None,
    ) -> None:
        if max_size < 1:
            raise ValueError(f"max_size must be at least 1, not {max_size}")
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, not {timeout}")
        self._connect = connect
        self._close = close
        self._check = check or (lambda _conn: True)
        self.max_size = max_size
        self.timeout = timeout
        self.meter = PoolMeter(max_size)
        self._idle: deque[C] = deque()
        self._waiters: deque[asyncio.Future[C]] = deque()
        # Every open connection, lent out or idle: a task cancelled twice can abandon one
        # without giving it back, and closing the pool must still close it.
        self._all: set[C] = set()
        self._closed = False

    async def open(self) -> None:
        """Open one connection up front so that a bad path fails here, not in a worker."""
        await self._release(await self._new_connection())

    async def close(self) -> None:
        """Close every connection, including any still lent out (their borrowers are done)."""
        self._closed = True
        for waiter in self._waiters:
            waiter.cancel()
        self._idle.clear()
        for conn in list(self._all):
            await self._discard(conn)

    async def _new_connection(self) -> C:
        self.meter.size += 1
        try:
            conn = await self._connect()
        except BaseException:
            self.meter.size -= 1
            raise
        self._all.add(conn)
        return conn

    async def _discard(self, conn: C) -> None:
        if conn not in self._all:
            return
        self._all.discard(conn)
        self.meter.size -= 1
        with contextlib.suppress(Exception):  # a connection thrown away may already be dead
            await self._close(conn)

    async def getconn(self, timeout: float | None = None) -> C:
        """Borrow a connection; raise ``PoolTimeout`` after ``timeout`` seconds of waiting."""
        if self._closed:
            raise RuntimeError("the pool is closed")
        started = time.monotonic()
        if self._idle:
            conn = self._idle.popleft()
        elif self.meter.size < self.max_size:
            conn = await self._new_connection()
        else:
            conn = await self._wait(started, self.timeout if timeout is None else timeout)
        self.meter.acquired(time.monotonic() - started)
        return conn

    async def _wait(self, started: float, timeout: float) -> C:
        waiter: asyncio.Future[C] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        self.meter.waiting += 1
        try:
            async with asyncio.timeout(timeout):
                return await waiter
        except BaseException as error:
            # A connection handed over just as the timeout or a cancellation hit must not leak.
            if waiter.done() and not waiter.cancelled():
                await self._release(waiter.result())
            if isinstance(error, TimeoutError):
                raise self.meter.timeout_error(time.monotonic() - started) from None
            raise
        finally:
            self.meter.waiting -= 1
            if waiter in self._waiters:
                self._waiters.remove(waiter)

    async def putconn(self, conn: C) -> None:
        """Give a borrowed connection back (a connection left mid-transaction is discarded)."""
        self.meter.released()
        await self._release(conn)

    async def _release(self, conn: C) -> None:
        if self._closed or not self._check(conn):
            if self._closed or not self._waiters:
                await self._discard(conn)
                return
            # Replace it in its own slot, kept for the waiters: a caller arriving while we close
            # and reconnect must queue behind them, not open one connection too many.
            self._all.discard(conn)
            with contextlib.suppress(Exception):  # it may already be dead
                await self._close(conn)
            try:
                conn = await self._connect()
            except Exception:
                self.meter.size -= 1
                return
            self._all.add(conn)
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(conn)
                return
        self._idle.append(conn)

    @asynccontextmanager
    async def connection(self, timeout: float | None = None) -> AsyncIterator[C]:
        conn = await self.getconn(timeout)
        try:
            yield conn
        finally:
            await self.putconn(conn)

    def get_stats(self) -> dict[str, int]:
        return self.meter.stats().as_psycopg_stats()

    def pop_stats(self) -> dict[str, int]:
        return self.meter.pop_stats().as_psycopg_stats()

    def stats(self) -> PoolStats:
        return self.meter.stats()
