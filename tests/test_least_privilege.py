"""Least privilege: the code a run serves reaches that run's database and nothing else.

PostgreSQL: the run's pool logs in as a role that owns the run's schema and nothing else, made
and dropped by ``harness.sql.isolation`` (swept by the next run if its process was killed).
SQLite: an authorizer on every pooled connection. Either way a refusal is ``PrivilegeRefused``,
saying what was refused and which line sent it.
"""

from __future__ import annotations

import secrets
import signal
import subprocess
import sys
import textwrap
from urllib.parse import unquote, urlsplit

import psycopg
import pytest

from conftest import POSTGRES_URL, base_config
from harness.exceptions import LeastPrivilegeWarning, PrivilegeRefused
from harness.paths import PROJECT_ROOT
from harness.sql.config import DatabaseConfig
from harness.sql.database import Database, execute_sql
from harness.sql.isolation import ROLE_PREFIX, isolated_config, isolated_database

#: Statement -> what the refusal says was refused, on each backend.
REFUSED = {
    "postgresql": {
        "DROP SCHEMA kata_canary CASCADE": "drop or change schema kata_canary",
        "COPY (SELECT 1) TO PROGRAM 'true'": "run a program on the database server",
        "SELECT pg_read_file('postgresql.conf')": "call pg_read_file()",
        "SET search_path TO public": "move search_path away from kata_test_",
        "SELECT set_config('search_path', 'public', false)": "move search_path away",
        "CREATE TABLE public.loot (x int)": "reach schema public, outside its own",
        "CREATE SCHEMA loot": "create schemas in database",
        "SET ROLE postgres": 'go beyond its own schema (permission denied to set role "postgres")',
    },
    "sqlite": {
        "ATTACH DATABASE 'elsewhere.db' AS elsewhere": "ATTACH another database file",
        "VACUUM INTO 'copy.db'": "ATTACH another database file (or VACUUM INTO one)",
        "DETACH DATABASE main": "DETACH a database",
        "SELECT load_extension('anything')": "load a SQLite extension",
        "PRAGMA writable_schema = ON": "set PRAGMA writable_schema",
        "PRAGMA journal_mode = DELETE": "set PRAGMA journal_mode",
        "PRAGMA foreign_keys = OFF": "set PRAGMA foreign_keys",
        "PRAGMA schema_version = 1": "set PRAGMA schema_version",
        "PRAGMA trusted_schema = ON": "set PRAGMA trusted_schema",
    },
}


def login(config: DatabaseConfig) -> str:
    return unquote(urlsplit(config.url).username or "")


def configured(sql: str, params: list[object] | None = None) -> list[tuple[object, ...]]:
    """Rows of ``sql`` run by the configured user, outside any run."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        cursor = conn.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module", autouse=True)
def _canary_schema() -> None:
    configured("CREATE SCHEMA IF NOT EXISTS kata_canary")


async def test_a_statement_past_the_run_s_database_is_refused_saying_what_and_where(
    database: Database, backend: str
) -> None:
    for sql, refused in REFUSED[backend].items():
        with pytest.raises(PrivilegeRefused) as caught:
            await execute_sql(sql)
        message = str(caught.value)
        assert message.startswith(f"the grader does not let a solution {refused}"), message
        assert f"`{sql}`" in message and "test_least_privilege.py:" in message, message
        # Refused, not half-done: the connection still works, in the run's own schema.
        assert await execute_sql("SELECT count(*) AS n FROM jobs") == [{"n": 0}]
    if backend == "postgresql":
        assert configured("SELECT 1 FROM pg_namespace WHERE nspname = 'kata_canary'") == [(1,)]


async def test_sqlite_pragmas_that_read_or_tune_the_connection_still_run() -> None:
    async with isolated_database(base_config("sqlite"), purpose="test"):
        assert (await execute_sql("PRAGMA journal_mode"))[0]["journal_mode"] == "wal"
        assert await execute_sql("PRAGMA busy_timeout = 50") == [{"timeout": 50}]
        await execute_sql("PRAGMA reverse_unordered_selects = ON")
        columns = await execute_sql("SELECT name FROM pragma_table_info('jobs')")
        assert {"id", "status"} <= {row["name"] for row in columns}


async def test_a_run_logs_in_as_a_role_that_owns_its_schema_and_nothing_else() -> None:
    async with isolated_database(base_config("postgresql"), purpose="test") as database:
        schema = database.config.schema
        role = login(database.config)
        assert role.startswith(ROLE_PREFIX) and role != login(DatabaseConfig(url=POSTGRES_URL))
        who = await execute_sql("SELECT session_user AS s, current_user AS c")
        assert who == [{"s": role, "c": role}]
        assert configured(
            "SELECT rolcanlogin, rolsuper, rolcreatedb, rolcreaterole, rolreplication, "
            "rolbypassrls, rolconfig FROM pg_roles WHERE rolname = %s",
            [role],
        ) == [(True, False, False, False, False, False, [f"search_path={schema}"])]
        assert (
            configured(
                "SELECT roleid::regrole::text FROM pg_auth_members WHERE member = %s::regrole",
                [role],
            )
            == []
        )
        for server_role in ("pg_execute_server_program", "pg_read_server_files"):
            assert configured("SELECT pg_has_role(%s, %s, 'MEMBER')", [role, server_role]) == [
                (False,)
            ]
        assert configured(
            "SELECT nspname FROM pg_namespace WHERE nspowner = %s::regrole", [role]
        ) == [(schema,)]
        assert (
            configured(
                "SELECT nspname FROM pg_namespace WHERE nspname <> %s "
                "AND has_schema_privilege(%s, oid, 'CREATE')",
                [schema, role],
            )
            == []
        )
        assert configured(
            "SELECT has_database_privilege(%s, current_database(), 'CREATE')", [role]
        ) == [(False,)]
    assert configured("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]) == []
    assert configured("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]) == []


_KILLED_RUN = textwrap.dedent(
    """
    import asyncio, sys, time
    from harness.sql.config import DatabaseConfig
    from harness.sql.isolation import isolated_config

    async def main():
        async with isolated_config(DatabaseConfig(url=sys.argv[1]), "test") as config:
            print(config.url.split("://", 1)[1].split(":", 1)[0], config.schema, flush=True)
            time.sleep(600)

    asyncio.run(main())
    """
)


async def test_the_role_of_a_killed_run_is_swept_by_the_next_run() -> None:
    child = subprocess.Popen(
        [sys.executable, "-c", _KILLED_RUN, POSTGRES_URL],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    with child.stdout:
        try:
            role, schema = child.stdout.readline().split()
        finally:
            child.send_signal(signal.SIGKILL)
            child.wait(timeout=30)
    assert role.startswith(ROLE_PREFIX)
    async with isolated_config(base_config("postgresql"), "test"):
        assert configured("SELECT 1 FROM pg_roles WHERE rolname = %s", [role]) == []
        assert configured("SELECT 1 FROM pg_namespace WHERE nspname = %s", [schema]) == []


async def test_without_createrole_a_run_falls_back_to_the_configured_user_and_says_so_once() -> (
    None
):
    user = f"kata_test_plain_{secrets.token_hex(4)}"
    configured(f"CREATE ROLE {user} LOGIN NOCREATEROLE")
    configured(f"GRANT CREATE ON DATABASE {urlsplit(POSTGRES_URL).path[1:]} TO {user}")
    parts = urlsplit(POSTGRES_URL)
    base = DatabaseConfig(
        url=parts._replace(netloc=f"{user}@{parts.netloc.split('@')[-1]}").geturl()
    )
    try:
        with pytest.warns(LeastPrivilegeWarning, match="no CREATEROLE") as warned:
            for _ in range(2):
                async with isolated_database(base, purpose="test") as database:
                    assert login(database.config) == user
                    assert await execute_sql("SELECT current_user AS c") == [{"c": user}]
        assert len(warned) == 1
    finally:
        configured(f"DROP OWNED BY {user}")
        configured(f"DROP ROLE {user}")
