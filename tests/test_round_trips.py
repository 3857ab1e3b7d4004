"""Round trips are counted exactly (the grader holds Task B to a budget with them), and the
simulated per-round-trip latency really delays each statement."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from typing import Any

import psycopg
import pytest

import harness.sql.database as database_module
from conftest import base_config
from harness.exceptions import RoundTripBudgetExceeded, TooManyParameters
from harness.scope import acting_as, scoped
from harness.sql.database import MAX_PARAMETERS, Database, execute_sql
from harness.sql.isolation import isolated_database
from harness.sql.models import Campaign, Job
from harness.sql.transactions import transaction


def counted(database: Database) -> tuple[int, int]:
    return database.round_trips.count, database.round_trips.writes


async def test_fixture_starts_with_zero_round_trips(database: Database) -> None:
    assert counted(database) == (0, 0)


async def test_one_execute_sql_is_one_round_trip(database: Database) -> None:
    await execute_sql("SELECT 1 AS one")
    assert counted(database) == (1, 0)


async def test_transaction_costs_begin_and_commit_on_top_of_its_statements(
    database: Database,
) -> None:
    async with transaction():
        await execute_sql("SELECT 1 AS one")
        await execute_sql("INSERT INTO campaigns (name) VALUES (?)", ["a"])
    assert counted(database) == (4, 1)


async def test_rolled_back_transaction_costs_begin_and_rollback(database: Database) -> None:
    with pytest.raises(ZeroDivisionError):
        async with transaction():
            await execute_sql("SELECT 1 AS one")
            1 / 0  # noqa: B018
    assert counted(database) == (3, 0)


async def test_savepoint_adds_two_round_trips(database: Database) -> None:
    async with transaction():
        await execute_sql("SELECT 1 AS one")
        async with transaction():
            await execute_sql("SELECT 2 AS two")
    # BEGIN, SELECT, SAVEPOINT, SELECT, RELEASE, COMMIT
    assert counted(database) == (6, 0)


async def test_failed_savepoint_adds_three_round_trips(database: Database) -> None:
    async with transaction():
        with pytest.raises(ZeroDivisionError):
            async with transaction():
                1 / 0  # noqa: B018
    # BEGIN, SAVEPOINT, ROLLBACK TO SAVEPOINT, RELEASE, COMMIT
    assert counted(database) == (5, 0)


async def test_orm_create_and_get_are_one_round_trip_each(database: Database) -> None:
    campaign = await Campaign.create(name="spring")
    assert counted(database) == (1, 1)
    job = await Job.create(campaign_id=campaign.id, email="ada@example.com")
    assert counted(database) == (2, 2)
    await Job.get(id=job.id)
    assert counted(database) == (3, 2)


async def test_orm_queries_update_save_and_refresh_are_one_round_trip_each(
    database: Database,
) -> None:
    campaign = await Campaign.create(name="spring")
    job = await Job.create(campaign_id=campaign.id, email="ada@example.com")
    database.round_trips.reset()

    await Job.filter(campaign_id=campaign.id).order_by("id").limit(5).all()
    await Job.all().first()
    await Job.all().count()
    assert counted(database) == (3, 0)
    await Job.filter(id=job.id).update(attempts=1)
    await job.save()
    assert counted(database) == (5, 2)
    await job.refresh()
    assert counted(database) == (6, 2)


async def test_reset_zeroes_both_counters(database: Database) -> None:
    await Campaign.create(name="spring")
    await execute_sql("SELECT 1 AS one")
    assert counted(database) == (2, 1)
    database.round_trips.reset()
    assert counted(database) == (0, 0)


async def test_writes_are_counted_separately_from_reads(database: Database) -> None:
    await execute_sql("INSERT INTO campaigns (name) VALUES (?)", ["a"])
    await execute_sql("UPDATE campaigns SET name = ?", ["b"])
    await execute_sql("SELECT * FROM campaigns")
    await execute_sql("DELETE FROM campaigns")
    await execute_sql("SELECT COUNT(*) AS n FROM campaigns")
    assert counted(database) == (5, 3)


async def test_failed_statement_still_costs_a_round_trip(database: Database) -> None:
    with pytest.raises((sqlite3.OperationalError, psycopg.errors.UndefinedTable)):
        await execute_sql("SELECT * FROM no_such_table")
    assert counted(database) == (1, 0)


# --- the limits the grader holds Task B to ----------------------------------------------------


def in_list(n: int) -> str:
    return "SELECT 1 AS one WHERE 1 IN (" + ", ".join("?" for _ in range(n)) + ")"


async def test_a_statement_of_65535_parameters_runs_on_every_backend(database: Database) -> None:
    assert await execute_sql(in_list(MAX_PARAMETERS), list(range(MAX_PARAMETERS))) == [{"one": 1}]


async def test_one_parameter_more_is_refused_on_every_backend_before_it_is_sent(
    database: Database,
) -> None:
    # SQLite as built here would run it (its limit is 250,000): the harness holds it to
    # PostgreSQL's, so that a batch size that breaks in production breaks in practice too.
    with pytest.raises(TooManyParameters, match="65,536 parameters") as refused:
        await execute_sql(in_list(MAX_PARAMETERS + 1), list(range(MAX_PARAMETERS + 1)))
    assert refused.value.count == MAX_PARAMETERS + 1
    assert counted(database) == (0, 0)


async def test_every_statement_over_the_budget_raises_and_the_first_stop_is_kept(
    database: Database,
) -> None:
    trips = database.round_trips
    trips.limit = 2
    swallowed = 0
    for _ in range(5):
        try:
            await execute_sql("INSERT INTO campaigns (name) VALUES (?)", ["a"])
        except RoundTripBudgetExceeded:  # what a candidate's `except BaseException` would do
            swallowed += 1
    assert (swallowed, counted(database)) == (3, (2, 2))
    assert trips.exceeded is not None and trips.exceeded.limit == 2
    trips.reset()
    assert trips.exceeded is None


async def test_transactions_are_counted_by_their_begin(database: Database) -> None:
    for _ in range(3):
        async with transaction():
            await execute_sql("SELECT 1 AS one")
    assert database.round_trips.transactions == 3


# --- simulated latency --------------------------------------------------------------------------


class SleepRecorder:
    """Stands in for the statement path's ``asyncio``: records each sleep, then really sleeps."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def sleep(self, delay: float) -> None:
        self.delays.append(delay)
        await asyncio.sleep(delay)

    def __getattr__(self, name: str) -> Any:
        return getattr(asyncio, name)


@pytest.fixture
def sleeps(monkeypatch: pytest.MonkeyPatch) -> SleepRecorder:
    recorder = SleepRecorder()
    monkeypatch.setattr(database_module, "asyncio", recorder)
    return recorder


async def run_sequentially(statements: int) -> float:
    started = time.monotonic()
    for n in range(statements):
        await execute_sql("SELECT ? AS n", [n])
    return time.monotonic() - started


async def test_sqlite_latency_delays_every_round_trip(sleeps: SleepRecorder) -> None:
    async with isolated_database(base_config("sqlite", latency=0.005), purpose="test"):
        elapsed = await run_sequentially(20)
    assert elapsed >= 20 * 0.005
    assert sleeps.delays.count(0.005) >= 20


async def test_sqlite_without_latency_never_sleeps(sleeps: SleepRecorder) -> None:
    async with isolated_database(base_config("sqlite", latency=0), purpose="test") as database:
        assert database.latency == 0
        await run_sequentially(20)
    assert sleeps.delays == []


async def test_simulated_latency_applies_on_every_backend(
    backend: str, sleeps: SleepRecorder
) -> None:
    async with isolated_database(base_config(backend, latency=0.005), purpose="test") as database:
        database.round_trips.reset()
        sleeps.delays.clear()
        elapsed = await run_sequentially(20)
        assert database.round_trips.count == 20
    assert elapsed >= 20 * 0.005
    assert sleeps.delays == [0.005] * 20


async def test_the_graders_own_statements_skip_the_latency_a_workers_pay(
    backend: str, sleeps: SleepRecorder
) -> None:
    # The latency stands for what the candidate's statements cost: the grader's setup and checks
    # (scoped latency=False) do not pay it, and anything a worker does inside them does.
    async with isolated_database(base_config(backend, latency=0.005), purpose="test"):
        sleeps.delays.clear()
        with scoped(latency=False):
            await run_sequentially(3)
            assert sleeps.delays == []
            with acting_as("worker-1"):
                await run_sequentially(2)
            assert sleeps.delays == [0.005] * 2
