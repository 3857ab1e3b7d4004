"""transaction() on both backends: commit, rollback (also on a crash), savepoints, the task that
owns a transaction, isolation from other tasks, and the connection going back to the pool."""

from __future__ import annotations

import asyncio
import sqlite3

import psycopg
import pytest

from harness.exceptions import WorkerCrashed
from harness.sql.database import Database, execute_sql
from harness.sql.models import Campaign
from harness.sql.transactions import Transaction, current_transaction, transaction

NO_SUCH_TABLE = {"sqlite": sqlite3.OperationalError, "postgresql": psycopg.errors.UndefinedTable}


class Boom(Exception):
    pass


async def campaign_names() -> list[str]:
    rows = await execute_sql("SELECT name FROM campaigns ORDER BY id")
    return [row["name"] for row in rows]


async def test_transaction_commits_on_exit(database: Database) -> None:
    async with transaction():
        await Campaign.create(name="a")
        await execute_sql("INSERT INTO campaigns (name) VALUES (?)", ["b"])
    assert await campaign_names() == ["a", "b"]


async def test_exception_rolls_back_every_write_of_the_block(database: Database) -> None:
    await Campaign.create(name="before")
    with pytest.raises(Boom):
        async with transaction():
            await Campaign.create(name="a")
            await execute_sql("UPDATE campaigns SET name = ? WHERE name = ?", ["changed", "before"])
            raise Boom
    assert await campaign_names() == ["before"]


async def test_worker_crash_rolls_back_too(database: Database) -> None:
    assert not issubclass(WorkerCrashed, Exception)
    with pytest.raises(WorkerCrashed):
        async with transaction():
            await Campaign.create(name="a")
            raise WorkerCrashed("before commit")
    assert await campaign_names() == []


async def test_sql_error_inside_the_block_rolls_back_the_block(database: Database) -> None:
    with pytest.raises(NO_SUCH_TABLE[database.dialect], match="no_such_table"):
        async with transaction():
            await Campaign.create(name="a")
            await execute_sql("SELECT * FROM no_such_table")
    assert await campaign_names() == []


async def test_nested_transaction_is_a_savepoint(database: Database) -> None:
    async with transaction() as outer:
        await Campaign.create(name="outer-1")
        with pytest.raises(Boom):
            async with transaction() as inner:
                assert inner is outer
                assert outer.depth == 1
                await Campaign.create(name="inner")
                raise Boom
        assert outer.depth == 0
        assert await campaign_names() == ["outer-1"]
        await Campaign.create(name="outer-2")
    assert await campaign_names() == ["outer-1", "outer-2"]


async def test_savepoint_recovers_from_a_failed_statement(database: Database) -> None:
    # On PostgreSQL a failed statement aborts the whole transaction unless a savepoint is
    # rolled back to; the outer block must be able to carry on.
    async with transaction():
        await Campaign.create(name="kept")
        with pytest.raises(NO_SUCH_TABLE[database.dialect], match="no_such_table"):
            async with transaction():
                await execute_sql("SELECT * FROM no_such_table")
        await Campaign.create(name="also kept")
    assert await campaign_names() == ["kept", "also kept"]


async def test_successful_nested_block_commits_with_the_outer_one(database: Database) -> None:
    with pytest.raises(Boom):
        async with transaction():
            async with transaction():
                await Campaign.create(name="inner")
            raise Boom
    assert await campaign_names() == []


async def test_current_transaction_is_only_set_inside_the_block(database: Database) -> None:
    assert current_transaction() is None
    async with transaction() as tx:
        assert isinstance(tx, Transaction)
        assert current_transaction() is tx
        assert tx.database is database
        assert tx.task is asyncio.current_task()
    assert current_transaction() is None


async def test_child_task_does_not_inherit_the_transaction(database: Database) -> None:
    async def child() -> tuple[Transaction | None, list[str]]:
        # Reads on a connection of its own: it cannot see the parent's uncommitted row.
        return current_transaction(), await campaign_names()

    async with transaction():
        await Campaign.create(name="uncommitted")
        seen, names = await asyncio.create_task(child())
    assert seen is None
    assert names == []


async def test_task_sees_its_own_uncommitted_writes_and_others_only_after_commit(
    database: Database,
) -> None:
    written = asyncio.Event()
    looked = asyncio.Event()
    seen_by_writer: list[str] = []

    async def writer() -> None:
        async with transaction():
            await Campaign.create(name="fresh")
            seen_by_writer.extend(await campaign_names())
            written.set()
            await looked.wait()

    task = asyncio.create_task(writer())
    await written.wait()
    assert current_transaction() is None
    seen_before_commit = await campaign_names()
    looked.set()
    await task

    assert seen_by_writer == ["fresh"]
    assert seen_before_commit == []
    assert await campaign_names() == ["fresh"]


async def test_open_transactions_tracks_the_open_transaction(database: Database) -> None:
    assert database.open_transactions == set()
    async with transaction() as tx:
        assert database.open_transactions == {tx}
        assert tx.age() >= 0
        async with transaction():
            assert database.open_transactions == {tx}
    assert database.open_transactions == set()

    with pytest.raises(Boom):
        async with transaction():
            raise Boom
    assert database.open_transactions == set()


async def test_connection_goes_back_to_the_pool_after_commit_and_rollback(
    database: Database,
) -> None:
    async with transaction():
        await Campaign.create(name="a")
        assert database.pool_stats().in_use == 1
    assert database.pool_stats().in_use == 0

    with pytest.raises(Boom):
        async with transaction():
            await Campaign.create(name="b")
            raise Boom
    assert database.pool_stats().in_use == 0

    with pytest.raises(WorkerCrashed):
        async with transaction():
            raise WorkerCrashed("mid-transaction")
    assert database.pool_stats().in_use == 0

    # The connections that came back are clean: the next transaction starts normally.
    async with transaction():
        await Campaign.create(name="c")
    assert await campaign_names() == ["a", "c"]


async def test_statements_inside_the_block_share_one_connection(database: Database) -> None:
    async with transaction() as tx:
        await Campaign.create(name="a")
        await execute_sql("SELECT 1 AS one")
        assert database.pool_stats().in_use == 1
        assert current_transaction() is tx
