"""A grading process reuses one database space for all its tests (``harness.sql.reuse``): each
test still starts from what a fresh database would be, whatever the test before it did to its
rows, its schema, its sessions or its login. On SQLite every use is a new file; on PostgreSQL it
is the same schema and role, emptied, unless the last test changed them, and the grader's own
sessions of the role are kept from one use to the next, reset to a new session's state."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import sqlite3
from collections.abc import AsyncIterator
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from conftest import BACKENDS, POSTGRES_URL, base_config
from harness.grading.schema_watch import schema_of
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


@pytest.fixture(params=[backend for backend in BACKENDS if backend == "postgresql"])
async def pg_space(request: pytest.FixtureRequest) -> AsyncIterator[ReusedSpace]:
    """A reused space on PostgreSQL, where the grader's sessions are kept between uses."""
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
    "drop-table": {
        "sqlite": ["DROP TABLE job_transitions"],
        "postgresql": ["DROP TABLE job_transitions"],
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
    "rule": {"postgresql": ["CREATE RULE swallow AS ON INSERT TO campaigns DO INSTEAD NOTHING"]},
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


async def test_the_role_gets_its_password_back(pg_space: ReusedSpace) -> None:
    async with pg_space.database() as database:
        await database.run("ALTER ROLE CURRENT_USER PASSWORD 'changed-by-the-test'")
    async with pg_space.database() as database:
        role, password = _login(database.config)
        assert _is_password(_stored_password(role), role, password)
        await database.run("ALTER ROLE CURRENT_USER PASSWORD 'changed-again'")
    async with pg_space.database() as database:
        assert _is_password(_stored_password(role), role, password)


async def test_the_role_gets_its_password_back_from_a_user_that_cannot_read_it() -> None:
    """A configured user with CREATEROLE but not superuser cannot read ``pg_authid``: the grader
    sets the role's password on every use."""
    if "postgresql" not in BACKENDS:
        return
    user = f"kata_test_maker_{secrets.token_hex(4)}"
    _configured(f"CREATE ROLE {user} LOGIN CREATEROLE")
    _configured(f"GRANT CREATE ON DATABASE {urlsplit(POSTGRES_URL).path[1:]} TO {user}")
    parts = urlsplit(POSTGRES_URL)
    netloc = f"{user}@{parts.netloc.split('@')[-1]}"
    space = ReusedSpace(DatabaseConfig(url=parts._replace(netloc=netloc).geturl()), "test")
    try:
        for _ in range(2):
            async with space.database() as database:
                role, password = _login(database.config)
                assert _is_password(_stored_password(role), role, password)
                await database.run("ALTER ROLE CURRENT_USER PASSWORD 'changed-by-the-test'")
                await add_jobs(database, 3)
        async with space.database() as database:
            assert _is_password(_stored_password(role), role, password)
            await expect_fresh(database)
        assert space.made == 1, space.remade
    finally:
        await space.close()
        _configured(f"DROP OWNED BY {user}")
        _configured(f"DROP ROLE {user}")


async def test_the_grader_s_sessions_are_kept_and_start_each_use_as_new(
    pg_space: ReusedSpace,
) -> None:
    """What a test's code may leave in a session of the pool (settings, a temporary table named
    like a kata table, a session lock, a held cursor, LISTEN, sequences' session state) does
    not reach the next use, whose sessions are the same (no new login)."""
    async with pg_space.database() as database:
        pids = await _on_every_connection(database, _leave_session_state)
    async with pg_space.database() as database:
        again = await _on_every_connection(database, _expect_new_session)
        (row,) = (await database.run("SELECT count(*) AS n FROM campaigns")).rows
        assert row["n"] == 0
    assert set(again) == set(pids), "the sessions were not kept"
    assert pg_space.made == 1, pg_space.remade


async def test_statements_psycopg_prepared_still_run_in_the_next_use(
    pg_space: ReusedSpace,
) -> None:
    """psycopg prepares a statement run often on a connection; the next use's reset must leave
    those statements (and psycopg's record of them) alone."""
    statement = "SELECT count(*) AS n, pg_backend_pid() AS pid FROM campaigns WHERE id > ?"
    for _ in range(3):
        async with pg_space.database() as database:
            for _ in range(8):
                (row,) = (await database.run(statement, [0])).rows
                assert row["n"] == 0
            await Campaign.create(name="spring")


async def test_a_session_prepared_by_the_code_is_not_kept(pg_space: ReusedSpace) -> None:
    async with pg_space.database() as database:
        (row,) = (await database.run("SELECT pg_backend_pid() AS pid")).rows
        await database.run("PREPARE left_behind AS SELECT 1")
    async with pg_space.database() as database:
        assert await _on_every_connection(database, _no_statement_prepared_by_sql)
        assert row["pid"] not in await _sessions_of(_login(database.config)[0])


async def test_a_connection_never_given_back_is_not_kept(pg_space: ReusedSpace) -> None:
    async with pg_space.database() as database:
        held = await database.backend.getconn()  # never given back, mid-transaction
        await held.execute("BEGIN")
        await held.execute("INSERT INTO campaigns (name) VALUES ('half-done')")
        pid = held.info.backend_pid
    async with pg_space.database() as database:
        role = _login(database.config)[0]
        assert pid not in await _sessions_of(role)
        (row,) = (await database.run("SELECT count(*) AS n FROM campaigns")).rows
        assert row["n"] == 0
    assert pg_space.made == 1, pg_space.remade


#: Changes to columns, each worded by ``information_schema.columns`` in its own way.
COLUMN_CHANGES = [
    "CREATE DOMAIN short_email AS varchar(10) NOT NULL",
    "ALTER TABLE jobs ADD COLUMN by_domain short_email",
    "CREATE DOMAIN numbers AS int[]",
    "ALTER TABLE jobs ADD COLUMN by_array_domain numbers",
    "ALTER TABLE jobs ADD COLUMN tags text[]",
    "CREATE TYPE mood AS ENUM ('calm')",
    "ALTER TABLE jobs ADD COLUMN mood mood",
    "ALTER TABLE jobs ALTER COLUMN attempts DROP NOT NULL",
    "ALTER TABLE jobs ALTER COLUMN email TYPE varchar(300)",
    "ALTER TABLE campaigns ADD COLUMN at timestamptz(3)",
    "CREATE VIEW running AS SELECT id, email FROM jobs",
    "CREATE TABLE parts (x int) PARTITION BY RANGE (x)",
]


async def test_the_columns_read_are_information_schema_s(pg_space: ReusedSpace) -> None:
    """``schema_of`` reads columns from the catalogs (the view costs several times more), in the
    words of ``information_schema.columns``: a change it saw is seen, and no other."""
    in_view = (
        "SELECT 'column ' || table_name || '.' || column_name AS key, "
        "data_type || ' ' || is_nullable AS definition "
        "FROM information_schema.columns WHERE table_schema = current_schema()"
    )
    async with pg_space.database() as database:
        for change in ["", *COLUMN_CHANGES]:
            if change:
                await database.run(change)
            columns = {k: v for k, v in (await schema_of(database)).items() if "column " in k}
            view = {row["key"]: row["definition"] for row in (await database.run(in_view)).rows}
            assert columns == view, change


async def test_a_kept_session_the_code_closed_is_dropped(pg_space: ReusedSpace) -> None:
    """Code that kept a connection of one test and closes it in the next (while the pool does
    not lend it) costs neither an error nor a new space."""
    async with pg_space.database() as database:
        stashed = [await database.backend.getconn() for _ in range(2)]
        for conn in stashed:
            await database.backend.putconn(conn)
    async with pg_space.database():  # its pool takes one of the two kept sessions
        for conn in stashed:
            await conn.close()
    async with pg_space.database() as database:
        await expect_fresh(database)
    assert pg_space.made == 1, pg_space.remade


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


# --- the grader's kept sessions, and the role's login ----------------------------------------


def _configured(sql: str, params: list[object] | None = None) -> list[tuple[Any, ...]]:
    """Rows of ``sql`` run by the configured (super)user of the suite's PostgreSQL."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def _login(config: DatabaseConfig) -> tuple[str, str]:
    parts = urlsplit(config.url)
    return unquote(parts.username or ""), unquote(parts.password or "")


def _stored_password(role: str) -> str:
    (row,) = _configured("SELECT rolpassword FROM pg_authid WHERE rolname = %s", [role])
    return str(row[0])


def _is_password(stored: str, role: str, password: str) -> bool:
    """Whether ``stored`` (``pg_authid.rolpassword``) is a hash of ``password``."""
    if stored.startswith("md5"):
        return stored == "md5" + hashlib.md5((password + role).encode()).hexdigest()
    method, rest = stored.split("$", 1)
    assert method == "SCRAM-SHA-256", stored
    iterations_salt, keys = rest.split("$")
    iterations, salt = iterations_salt.split(":")
    stored_key = keys.split(":")[0]
    salted = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), base64.b64decode(salt), int(iterations)
    )
    client_key = hmac.new(salted, b"Client Key", hashlib.sha256).digest()
    return base64.b64encode(hashlib.sha256(client_key).digest()).decode() == stored_key


async def _sessions_of(role: str) -> list[int]:
    rows = _configured("SELECT pid FROM pg_stat_activity WHERE usename = %s", [role])
    return [row[0] for row in rows]


#: How many of the pool's connections the session tests borrow at once.
_BORROWED = 3


async def _on_every_connection(database: Database, check: Any) -> list[Any]:
    """``check(conn)`` on ``_BORROWED`` of the pool's connections at once; what each returned."""
    borrowed = [await database.backend.getconn() for _ in range(_BORROWED)]
    try:
        return [await check(conn) for conn in borrowed]
    finally:
        for conn in borrowed:
            await database.backend.putconn(conn)


async def _one(conn: Any, sql: str) -> Any:
    cursor = await conn.execute(sql)
    row = await cursor.fetchone()
    return None if row is None else next(iter(row.values()))


async def _leave_session_state(conn: Any) -> int:
    for statement in (
        "SET TimeZone = 'Europe/Paris'",
        "SET synchronous_commit = on",
        "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE",
        "SELECT set_config('application_name', 'left-behind', false)",
        "CREATE TEMPORARY TABLE campaigns (id int, name text)",
        "INSERT INTO campaigns VALUES (7, 'from a temporary table')",
        "CREATE TEMPORARY SEQUENCE left_behind",
        "SELECT nextval('left_behind')",
        "SELECT pg_advisory_lock(pg_backend_pid())",
        "LISTEN left_behind",
        "BEGIN",
        "DECLARE held CURSOR WITH HOLD FOR SELECT 1",
        "COMMIT",
        "SET lock_timeout = '1ms'",
        "SET statement_timeout = '5ms'",
    ):
        await conn.execute(statement)
    return int(conn.info.backend_pid)


async def _expect_new_session(conn: Any) -> int:
    assert await _one(conn, "SHOW lock_timeout") == "0"
    assert await _one(conn, "SHOW statement_timeout") == "0"
    assert await _one(conn, "SHOW TimeZone") == "UTC"
    assert await _one(conn, "SHOW synchronous_commit") == "off", "the grading's, from its login"
    assert await _one(conn, "SHOW default_transaction_isolation") == "read committed"
    assert await _one(conn, "SHOW application_name") != "left-behind"
    assert await _one(conn, "SELECT to_regclass('pg_temp.campaigns')::text") is None
    assert await _one(conn, "SELECT to_regclass('pg_temp.left_behind')::text") is None
    locks = "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()"
    assert await _one(conn, locks) == 0
    assert await _one(conn, "SELECT count(*) FROM pg_listening_channels()") == 0
    assert await _one(conn, "SELECT count(*) FROM pg_cursors") == 0
    schema = await _one(conn, "SELECT current_schema()")
    assert schema is not None and schema.startswith("kata_test_"), schema
    return int(conn.info.backend_pid)


async def _no_statement_prepared_by_sql(conn: Any) -> bool:
    return bool(await _one(conn, "SELECT count(*) = 0 FROM pg_prepared_statements WHERE from_sql"))
