"""A grading process reuses one database space for all its tests (``harness.sql.reuse``): each
test still starts from what a fresh database would be, whatever the test before it did to its
rows, its schema, its sessions or its login. On SQLite every use is a new file; on PostgreSQL it
is the same schema and role, emptied, unless the last test changed them."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from conftest import BACKENDS, base_config
from harness.grading.tamper import schema_of
from harness.sql.config import DatabaseConfig
from harness.sql.database import Database
from harness.sql.models import Campaign, Job, JobStatus
from harness.sql.reuse import ReusedSpace


@pytest.fixture(params=BACKENDS)
async def space(request: pytest.FixtureRequest) -> AsyncIterator[ReusedSpace]:
    reused = ReusedSpace(base_config(request.param), purpose="test")
    try:
        yield reused
    finally:
        await reused.close()


async def add_jobs(database: Database, count: int) -> None:
    campaign = await Campaign.create(name="spring")
    await database.run(
        "INSERT INTO jobs (campaign_id, email) SELECT ?, 'c' || g || '@example.com' "
        "FROM generate_series(1, ?) AS g"
        if database.dialect == "postgresql"
        else "WITH RECURSIVE g(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM g WHERE n < ?) "
        "INSERT INTO jobs (campaign_id, email) SELECT ?, 'c' || n || '@example.com' FROM g",
        [campaign.id, count] if database.dialect == "postgresql" else [count, campaign.id],
    )
    await Job.filter(campaign_id=campaign.id).update(status=JobStatus.RUNNING)


async def expect_fresh(database: Database) -> None:
    """No rows anywhere, ids from 1, the transitions trigger at work, the defaults as made."""
    for table in ("job_transitions", "jobs", "customers", "campaigns", "kata_meta"):
        (row,) = (await database.run(f"SELECT count(*) AS n FROM {table}")).rows
        assert row["n"] == 0, table
    campaign = await Campaign.create(name="next")
    job = await Job.create(campaign_id=campaign.id, email="ada@example.com")
    assert (campaign.id, job.id, job.attempts) == (1, 1, 0)
    await Job.filter(id=job.id).update(status=JobStatus.RUNNING)
    (row,) = (await database.run("SELECT count(*) AS n FROM job_transitions")).rows
    assert row["n"] == 1


@pytest.mark.parametrize("rows", [3, 2500], ids=["a-few-rows", "many-rows"])
async def test_each_use_starts_empty_with_ids_from_1(space: ReusedSpace, rows: int) -> None:
    for _ in range(2):
        async with space.database() as database:
            await add_jobs(database, rows)
    async with space.database() as database:
        await expect_fresh(database)
    assert space.made == (1 if space.base.dialect == "postgresql" else 0), space.remade


#: Changes a test could make that a fresh database would not have, per dialect.
CHANGES: dict[str, dict[str, list[str]]] = {
    "drop-index": {
        "sqlite": ["DROP INDEX jobs_by_status"],
        "postgresql": ["DROP INDEX jobs_by_status"],
    },
    "add-column": {
        "sqlite": ["ALTER TABLE jobs ADD COLUMN extra TEXT"],
        "postgresql": ["ALTER TABLE jobs ADD COLUMN extra TEXT"],
    },
    "drop-trigger": {
        "sqlite": ["DROP TRIGGER jobs_record_transition"],
        "postgresql": ["DROP TRIGGER jobs_record_transition ON jobs"],
    },
    # What SQLite has no statement for: PostgreSQL only, on SQLite the test changes nothing.
    "disable-trigger": {"postgresql": ["ALTER TABLE jobs DISABLE TRIGGER jobs_record_transition"]},
    "replace-trigger-function": {
        "postgresql": [
            "CREATE OR REPLACE FUNCTION kata_record_transition() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
        ]
    },
    "column-default": {"postgresql": ["ALTER TABLE jobs ALTER COLUMN attempts SET DEFAULT 3"]},
    "role-setting": {"postgresql": ["ALTER ROLE CURRENT_USER SET lock_timeout = '1ms'"]},
    "password": {"postgresql": ["ALTER ROLE CURRENT_USER PASSWORD 'changed-by-the-test'"]},
}


@pytest.mark.parametrize("change", list(CHANGES))
async def test_a_test_that_changed_the_database_does_not_change_the_next(
    space: ReusedSpace, change: str
) -> None:
    statements = CHANGES[change].get(space.base.dialect, [])
    async with space.database() as database:
        made = await schema_of(database)
        await add_jobs(database, 3)
        for statement in statements:
            await database.run(statement)
    async with space.database() as database:
        assert await schema_of(database) == made
        await expect_fresh(database)
        if database.dialect == "postgresql":
            (row,) = (await database.run("SELECT current_setting('lock_timeout') AS t")).rows
            assert row["t"] == "0"


async def test_a_session_left_open_does_not_reach_the_next_test(space: ReusedSpace) -> None:
    async with space.database() as database:
        left = await _connect(database.config)  # leaked: never closed by the test that opened it
    try:
        async with space.database() as database:
            with suppress(psycopg.Error, sqlite3.Error):
                await _insert_campaign(left)
            (row,) = (await database.run("SELECT count(*) AS n FROM campaigns")).rows
            assert row["n"] == 0
    finally:
        await _close(left)


async def test_close_leaves_nothing_behind(space: ReusedSpace) -> None:
    async with space.database() as database:
        config = database.config
    await space.close()
    if config.dialect == "sqlite":
        assert not Path(config.sqlite_path).parent.exists()
        return
    async with await psycopg.AsyncConnection.connect(space.base.url) as admin:
        cursor = await admin.execute(
            "SELECT (SELECT count(*) FROM pg_namespace WHERE nspname = %s), "
            "(SELECT count(*) FROM pg_roles WHERE rolname = %s)",
            [config.schema, urlsplit(config.url).username],
        )
        assert await cursor.fetchone() == (0, 0)


# --- a session outside the harness, as a leaked connection would be ---------------------------


async def _connect(config: DatabaseConfig) -> object:
    if config.dialect == "sqlite":
        return sqlite3.connect(config.sqlite_path)
    return await psycopg.AsyncConnection.connect(config.url, autocommit=True)


async def _insert_campaign(connection: object) -> None:
    if isinstance(connection, sqlite3.Connection):
        connection.execute("INSERT INTO campaigns (name) VALUES ('late')")
        connection.commit()
        return
    assert isinstance(connection, psycopg.AsyncConnection)
    await connection.execute("INSERT INTO campaigns (name) VALUES ('late')")


async def _close(connection: object) -> None:
    if isinstance(connection, sqlite3.Connection):
        connection.close()
    elif isinstance(connection, psycopg.AsyncConnection):
        await connection.close()
