"""harness.sql.pool.ConnectionPool in memory (fake connections, no database), then both backends'
pools through the Database: exhaustion raises PoolTimeout and the statistics say so."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

import harness.sql.pool as pool_module
from conftest import base_config
from harness.exceptions import HarnessError, PoolTimeout
from harness.sql.database import Database, execute_sql
from harness.sql.isolation import isolated_database
from harness.sql.pool import ConnectionPool


class FakeConnection:
    def __init__(self, number: int) -> None:
        self.number = number
        self.healthy = True
        self.closed = False

    def __repr__(self) -> str:
        return f"<FakeConnection {self.number}>"


class FakeServer:
    """Opens numbered fake connections and remembers what it opened and closed."""

    def __init__(self) -> None:
        self.opened: list[FakeConnection] = []
        self.closed: list[FakeConnection] = []
        #: Cleared to make ``close`` block, as closing a real connection takes a round trip.
        self.close_may_finish = asyncio.Event()
        self.close_may_finish.set()

    async def connect(self) -> FakeConnection:
        conn = FakeConnection(len(self.opened) + 1)
        self.opened.append(conn)
        return conn

    async def close(self, conn: FakeConnection) -> None:
        await self.close_may_finish.wait()
        conn.closed = True
        self.closed.append(conn)

    def pool(self, max_size: int, timeout: float = 5.0) -> ConnectionPool[FakeConnection]:
        return ConnectionPool(
            self.connect,
            self.close,
            max_size=max_size,
            timeout=timeout,
            check=lambda conn: conn.healthy,
        )


class FakeClock:
    """Stands in for the pool's ``time`` module so that waits are exact numbers."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now


@pytest.fixture
def server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(pool_module, "time", fake)
    return fake


async def start_waiting(pool: ConnectionPool[FakeConnection]) -> asyncio.Task[FakeConnection]:
    """A task blocked in ``getconn`` (it has joined the queue when this returns)."""
    waiting_before = pool.stats().waiting
    task = asyncio.create_task(pool.getconn())
    while pool.stats().waiting == waiting_before and not task.done():
        await asyncio.sleep(0)
    return task


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(("max_size", "timeout"), [(0, 1.0), (1, 0.0), (1, -1.0)])
def test_pool_rejects_invalid_configuration_up_front(
    server: FakeServer, max_size: int, timeout: float
) -> None:
    with pytest.raises(ValueError, match="must be"):
        server.pool(max_size=max_size, timeout=timeout)


# --- growth and reuse -------------------------------------------------------------------------


async def test_pool_opens_connections_lazily_up_to_max_size(server: FakeServer) -> None:
    pool = server.pool(max_size=3)
    assert pool.stats().size == 0
    assert server.opened == []

    first = await pool.getconn()
    assert (pool.stats().size, len(server.opened)) == (1, 1)
    await pool.putconn(first)
    assert await pool.getconn() is first, "an idle connection is reused before opening another"
    assert len(server.opened) == 1

    second, third = await pool.getconn(), await pool.getconn()
    assert {first, second, third} == set(server.opened)
    assert (pool.stats().size, pool.stats().in_use) == (3, 3)

    fourth = await start_waiting(pool)
    assert len(server.opened) == 3, "a full pool makes callers wait instead of growing"
    await pool.putconn(second)
    assert await fourth is second
    assert pool.stats().size == 3


async def test_open_makes_one_idle_connection_up_front(server: FakeServer) -> None:
    pool = server.pool(max_size=2)
    await pool.open()
    stats = pool.stats()
    assert (stats.size, stats.in_use, stats.idle, stats.acquisitions) == (1, 0, 1, 0)


async def test_connection_context_manager_gives_the_connection_back_on_error(
    server: FakeServer,
) -> None:
    pool = server.pool(max_size=1)
    with pytest.raises(ZeroDivisionError):
        async with pool.connection():
            1 / 0  # noqa: B018
    assert pool.stats().in_use == 0
    async with pool.connection() as conn:
        assert conn is server.opened[0]


# --- waiting ------------------------------------------------------------------------------------


async def test_waiters_are_served_first_come_first_served(server: FakeServer) -> None:
    pool = server.pool(max_size=1)
    held = await pool.getconn()
    served: list[str] = []

    async def borrow(name: str) -> None:
        conn = await pool.getconn()
        served.append(name)
        await asyncio.sleep(0)
        await pool.putconn(conn)

    tasks = []
    for name in ("first", "second", "third"):
        tasks.append(asyncio.create_task(borrow(name)))
        while pool.stats().waiting < len(tasks):
            await asyncio.sleep(0)

    await pool.putconn(held)
    await asyncio.gather(*tasks)
    assert served == ["first", "second", "third"]
    assert len(server.opened) == 1


async def test_pool_timeout_says_how_long_it_waited_and_who_holds_the_connections(
    server: FakeServer,
) -> None:
    pool = server.pool(max_size=2, timeout=0.05)
    await pool.getconn()
    await pool.getconn()

    with pytest.raises(PoolTimeout) as caught:
        await pool.getconn()

    error = caught.value
    assert isinstance(error, TimeoutError)
    assert isinstance(error, HarnessError)
    assert error.waited >= 0.05
    assert (error.max_size, error.in_use) == (2, 2)
    assert error.waiting == 1, "the caller that timed out was still waiting when it gave up"
    assert "in use" in str(error)
    assert "2 of 2" in str(error)
    assert pool.stats().waiting == 0


async def test_getconn_timeout_argument_overrides_the_pool_timeout(server: FakeServer) -> None:
    pool = server.pool(max_size=1, timeout=60.0)
    await pool.getconn()
    with pytest.raises(PoolTimeout) as caught:
        await pool.getconn(timeout=0.01)
    assert caught.value.waited >= 0.01


# --- statistics ---------------------------------------------------------------------------------


async def test_statistics_count_acquisitions_timeouts_and_waits_exactly(
    server: FakeServer, clock: FakeClock
) -> None:
    pool = server.pool(max_size=1, timeout=0.02)
    held = await pool.getconn()  # no wait

    waiter = await start_waiting(pool)
    clock.now += 0.25
    assert pool.stats().waiting == 1
    await pool.putconn(held)
    held = await waiter  # waited 0.25 s

    loser = await start_waiting(pool)
    clock.now += 0.5
    with pytest.raises(PoolTimeout) as caught:
        await loser  # times out (real 0.02 s) having waited 0.5 s on the pool's clock
    assert caught.value.waited == 0.5

    stats = pool.stats()
    assert stats.max_size == 1
    assert stats.size == 1
    assert stats.in_use == 1
    assert stats.idle == 0
    assert stats.waiting == 0
    assert stats.acquisitions == 2
    assert stats.timeouts == 1
    assert stats.total_wait == 0.75
    assert stats.max_wait == 0.5
    assert stats.mean_wait == 0.375

    assert pool.get_stats() == {
        "pool_max": 1,
        "pool_size": 1,
        "pool_available": 0,
        "requests_waiting": 0,
        "requests_num": 2,
        "requests_wait_ms": 750,
        "requests_errors": 1,
        "in_use": 1,
        "max_wait_ms": 500,
    }


async def test_pop_stats_returns_the_counters_and_resets_them(
    server: FakeServer, clock: FakeClock
) -> None:
    pool = server.pool(max_size=1)
    held = await pool.getconn()
    waiter = await start_waiting(pool)
    clock.now += 0.125
    await pool.putconn(held)
    await waiter

    popped = pool.pop_stats()
    assert (popped["requests_num"], popped["max_wait_ms"], popped["in_use"]) == (2, 125, 1)

    after = pool.stats()
    assert (after.acquisitions, after.timeouts, after.total_wait, after.max_wait) == (0, 0, 0, 0)
    # Gauges describe the pool right now and are not reset.
    assert (after.size, after.in_use) == (1, 1)


# --- unhealthy connections ----------------------------------------------------------------------


async def test_connection_failing_the_check_on_return_is_discarded(server: FakeServer) -> None:
    pool = server.pool(max_size=1)
    conn = await pool.getconn()
    conn.healthy = False
    await pool.putconn(conn)

    assert server.closed == [conn]
    assert (pool.stats().size, pool.stats().in_use) == (0, 0)
    fresh = await pool.getconn()
    assert fresh is not conn
    assert fresh.healthy


async def test_waiter_gets_a_new_connection_when_the_returned_one_fails_the_check(
    server: FakeServer,
) -> None:
    pool = server.pool(max_size=1)
    conn = await pool.getconn()
    waiter = await start_waiting(pool)
    conn.healthy = False
    await pool.putconn(conn)

    replacement = await asyncio.wait_for(waiter, timeout=1.0)
    assert replacement is not conn
    assert server.closed == [conn]
    assert (pool.stats().size, pool.stats().in_use) == (1, 1)


async def test_replacing_a_discarded_connection_never_grows_the_pool_past_max_size(
    server: FakeServer,
) -> None:
    pool = server.pool(max_size=1, timeout=0.5)
    conn = await pool.getconn()
    waiter = await start_waiting(pool)
    conn.healthy = False
    server.close_may_finish.clear()
    giving_back = asyncio.create_task(pool.putconn(conn))
    await asyncio.sleep(0)  # putconn is now closing the broken connection

    newcomer = asyncio.create_task(pool.getconn())
    await asyncio.sleep(0.01)
    server.close_may_finish.set()
    await giving_back

    done, _ = await asyncio.wait([waiter, newcomer], return_when=asyncio.FIRST_COMPLETED)
    assert pool.stats().size <= 1
    assert done == {waiter}, "the waiter was first in line"
    await pool.putconn(waiter.result())
    await pool.putconn(await newcomer)


# --- cancellation -------------------------------------------------------------------------------


async def test_cancelled_waiter_leaves_the_queue_and_leaks_nothing(server: FakeServer) -> None:
    pool = server.pool(max_size=1)
    held = await pool.getconn()
    waiter = await start_waiting(pool)

    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    assert pool.stats().waiting == 0

    await pool.putconn(held)
    assert (pool.stats().in_use, pool.stats().idle) == (0, 1)
    assert await pool.getconn() is held


async def test_waiter_cancelled_after_being_handed_a_connection_gives_it_back(
    server: FakeServer,
) -> None:
    pool = server.pool(max_size=1)
    held = await pool.getconn()
    waiter = await start_waiting(pool)

    await pool.putconn(held)  # hands the connection to the waiter...
    waiter.cancel()  # ...which is cancelled before it could run
    with pytest.raises(asyncio.CancelledError):
        await waiter

    stats = pool.stats()
    assert (stats.size, stats.in_use, stats.idle, stats.waiting) == (1, 0, 1, 0)
    assert await asyncio.wait_for(pool.getconn(), timeout=1.0) is held
    assert len(server.opened) == 1


async def test_waiter_that_times_out_leaves_the_queue(server: FakeServer) -> None:
    pool = server.pool(max_size=1, timeout=0.01)
    held = await pool.getconn()
    with pytest.raises(PoolTimeout):
        await pool.getconn()
    await pool.putconn(held)
    assert (pool.stats().idle, pool.stats().waiting) == (1, 0)


async def test_close_closes_every_connection_even_one_never_given_back(
    server: FakeServer,
) -> None:
    pool = server.pool(max_size=2)
    first, second = await pool.getconn(), await pool.getconn()
    await pool.putconn(first)
    await pool.close()  # `second` is still lent out: its borrower may have been cancelled away
    assert sorted(server.closed, key=id) == sorted([first, second], key=id)
    await pool.putconn(second)  # a late return after close is harmless: not closed twice
    assert len(server.closed) == 2
    assert pool.stats().size == 0
    with pytest.raises(RuntimeError, match="closed"):
        await pool.getconn()


# --- both backends through the Database -------------------------------------------------------


@pytest.fixture
async def small_pool_database(backend: str) -> AsyncIterator[Database]:
    config = base_config(backend, pool_size=2, pool_timeout=0.2)
    async with isolated_database(config, purpose="test") as database:
        yield database


async def test_exhausted_database_pool_raises_pool_timeout_and_recovers(
    small_pool_database: Database,
) -> None:
    database = small_pool_database
    async with database.connection(), database.connection():
        with pytest.raises(PoolTimeout) as caught:
            await execute_sql("SELECT 1 AS one")
        stats = database.pool_stats()
        assert (stats.timeouts, stats.in_use, stats.max_size) == (1, 2, 2)

    assert isinstance(caught.value, TimeoutError)
    assert caught.value.waited >= 0.2
    assert (caught.value.max_size, caught.value.in_use) == (2, 2)
    assert "in use" in str(caught.value)

    assert await execute_sql("SELECT 1 AS one") == [{"one": 1}]
    stats = database.pool_stats()
    assert (stats.timeouts, stats.in_use) == (1, 0)
