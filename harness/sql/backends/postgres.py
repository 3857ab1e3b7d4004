"""PostgreSQL through psycopg 3 (async) and psycopg_pool.

Connections are in autocommit mode and the harness issues ``BEGIN``/``COMMIT`` itself, exactly as
on SQLite, so that every round trip is visible and counted. The session time zone is UTC, so
timestamps come back as aware UTC datetimes and naive ones are read as UTC, as on SQLite.
``search_path`` points at the configured schema: the grader and the tests each use a schema of
their own and never touch anything else in the database. There the pool logs in as a role that
owns that schema and nothing else (``harness.sql.isolation``): what it may not do, the server
refuses, and a statement that moves ``search_path`` elsewhere is undone and refused here.
"""

from __future__ import annotations

import re
import time
from typing import Any

import psycopg
import psycopg_pool
from psycopg.pq import ExecStatus
from psycopg.rows import dict_row

from ..config import DatabaseConfig
from ..pool import PoolMeter, PoolStats
from ..sqlparams import to_numbered
from .base import Result, plain_value

__all__ = ["PostgresBackend", "connection_options"]

#: What the server's "permission denied" is about, for "the grader does not let a solution ...".
_REFUSALS: tuple[tuple[re.Pattern[str], str], ...] = (
    (re.compile(r"external program"), "run a program on the database server with COPY ... PROGRAM"),
    (re.compile(r"COPY (to|from) a file"), "read or write files on the database server"),
    (re.compile(r"must be owner of (\w+) (\w+)"), r"drop or change \1 \2, which it does not own"),
    (re.compile(r"permission denied for function (\w+)"), r"call \1()"),
    (re.compile(r"search_path is pinned to (\w+)"), r"move search_path away from \1"),
    (re.compile(r"permission denied for schema (\w+)"), r"reach schema \1, outside its own"),
    (re.compile(r"permission denied for database (\w+)"), r"create schemas in database \1"),
)


_TUPLES_OK = ExecStatus.TUPLES_OK


def connection_options(config: DatabaseConfig) -> str:
    """The libpq ``options`` that give every connection UTC and the configured schema."""
    options = "-c TimeZone=UTC"
    if config.schema:
        options += f" -c search_path={config.schema}"
    return options


class PostgresBackend:
    dialect = "postgresql"
    # READ COMMITTED, PostgreSQL's default: each statement sees what was committed before it began.
    begin_sql = "BEGIN"

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self.meter = PoolMeter(config.pool_size)
        # Lent-out connections: psycopg_pool's close() leaves them open until returned, and a
        # task cancelled twice may never return one.
        self._lent: set[psycopg.AsyncConnection[Any]] = set()
        self.pool = psycopg_pool.AsyncConnectionPool(
            config.url,
            min_size=1,
            max_size=config.pool_size,
            timeout=config.pool_timeout,
            open=False,
            kwargs={
                "autocommit": True,
                "row_factory": dict_row,
                "options": connection_options(config),
            },
            name="kata",
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=max(self.config.pool_timeout, 5.0))

    async def close(self) -> None:
        for conn in list(self._lent):
            await conn.close()
        self._lent.clear()
        await self.pool.close()

    async def getconn(self) -> psycopg.AsyncConnection[Any]:
        started = time.monotonic()
        self.meter.waiting += 1
        try:
            conn = await self.pool.getconn()
        except psycopg_pool.PoolTimeout as error:
            raise self.meter.timeout_error(time.monotonic() - started, error) from error
        finally:
            self.meter.waiting -= 1
        self.meter.acquired(time.monotonic() - started)
        self._lent.add(conn)
        return conn

    async def putconn(self, conn: psycopg.AsyncConnection[Any]) -> None:
        self.meter.released()
        self._lent.discard(conn)
        # psycopg_pool rolls back a connection returned mid-transaction and drops a broken one.
        await self.pool.putconn(conn)

    async def execute(
        self, conn: psycopg.AsyncConnection[Any], sql: str, params: list[Any]
    ) -> Result:
        # A raw cursor sends the statement numbered ($1, $2...) as it is: psycopg would scan
        # ``%s`` placeholders again, in Python, and a bulk INSERT of thousands of rows is long.
        # Always a parameter list, as before: no parameters is the simple query protocol.
        statement, placeholders = to_numbered(sql)
        if placeholders != len(params):  # psycopg's own check and words, before anything is sent
            raise psycopg.ProgrammingError(
                f"the query has {placeholders} placeholders but {len(params)} parameters were "
                "passed"
            )
        async with psycopg.AsyncRawCursor(conn, row_factory=dict_row) as cursor:
            await cursor.execute(statement, [plain_value(value) for value in params])
            answer = cursor.pgresult
            # Whether it returned rows, as ``description`` tells, without building the columns.
            returned = answer is not None and (answer.nfields or answer.status == _TUPLES_OK)
            rows = await cursor.fetchall() if returned else []
            result = Result(list(rows), cursor.rowcount)
        if self.config.schema and "search_path" in sql.lower():
            await self._keep_search_path(conn, self.config.schema)
        return result

    @staticmethod
    async def _keep_search_path(conn: psycopg.AsyncConnection[Any], schema: str) -> None:
        """Undo a statement that moved ``search_path`` off the grading's schema, and refuse it.

        The server lets any role change its own ``search_path``; the role cannot reach other
        schemas anyway, but the code would then read and write somewhere else than the grader
        looks. The statement's text only says when to look; the setting itself decides.
        """
        async with conn.cursor() as cursor:
            await cursor.execute("SELECT pg_catalog.current_setting('search_path') AS path")
            row = await cursor.fetchone()
            path = str(row["path"] if row else "")
            if path.replace('"', "").replace(" ", "") == schema:
                return
            await cursor.execute("SELECT pg_catalog.set_config('search_path', %s, false)", [schema])
        raise psycopg.errors.InsufficientPrivilege(
            f"search_path is pinned to {schema}; the statement set it to {path}"
        )

    def refusal(self, conn: psycopg.AsyncConnection[Any], error: Exception) -> str | None:
        """What the server refused the grading's role, if ``error`` is its "permission denied"."""
        if not isinstance(error, psycopg.errors.InsufficientPrivilege):
            return None
        message = str(error).splitlines()[0] if str(error) else ""
        for pattern, action in _REFUSALS:
            found = pattern.search(message)
            if found:
                return found.expand(action)
        return f"go beyond its own schema ({message})"

    def stats(self) -> PoolStats:
        self.meter.size = self.pool.get_stats().get("pool_size", 0)
        return self.meter.stats()

    def pop_stats(self) -> PoolStats:
        self.meter.size = self.pool.get_stats().get("pool_size", 0)
        return self.meter.pop_stats()
