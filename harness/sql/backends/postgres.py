"""PostgreSQL through psycopg 3 (async) and psycopg_pool.

Connections are in autocommit mode and the harness issues ``BEGIN``/``COMMIT`` itself, exactly as
on SQLite, so that every round trip is visible and counted. The session time zone is UTC, so
timestamps come back as aware UTC datetimes and naive ones are read as UTC, as on SQLite.
``search_path`` points at the configured schema: the grader and the tests each use a schema of
their own and never touch anything else in the database. There the pool logs in as a role that
owns that schema and nothing else (``harness.sql.isolation``): what it may not do, the server
refuses, and a statement that moves ``search_path`` elsewhere is undone and refused here.

A pool may be given ``KeptSessions``: the sessions of the pool before it on the same login, kept
when that pool closed, handed out again before anyone logs in anew. The grader's reused space
(``harness.sql.reuse``) keeps its role's sessions so from one test to the next, and brings each
back to a new session's state (``KeptSessions.reset``) before the next test's pool opens.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import psycopg
import psycopg_pool
from psycopg.pq import ExecStatus, TransactionStatus
from psycopg.rows import dict_row

from ..config import DatabaseConfig
from ..pool import PoolMeter, PoolStats
from ..sqlparams import to_numbered
from .base import Result, plain_value

__all__ = ["KeptSessions", "PostgresBackend", "connection_options"]

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


class KeptSessions:
    """Sessions of one login that outlive the pool that opened them, for the next pool.

    The pool's connections come from here first (``take``), and a pool that closes gives its
    idle connections back (``parking``) instead of ending their sessions: the next pool needs no
    new login, and the server's caches of the schema are warm. A connection is kept only if it
    is idle, out of any transaction and in autocommit; one still lent out when its pool closed
    is closed, as before. Kept sessions are ``reset`` to a new session's state before they are
    handed out again; ``close`` ends them all.
    """

    def __init__(self, limit: int) -> None:
        #: The most sessions kept (a pool's size: a pool opens no more than that).
        self.limit = limit
        self._idle: list[_KeptConnection] = []
        self._parking = False
        #: The login (URL and options) of the sessions: one of another login is never handed out.
        self._login: tuple[str, str] | None = None

    def __len__(self) -> int:
        return len(self._idle)

    @property
    def pids(self) -> list[int]:
        """The server's process id of each kept session (one closed meanwhile has none)."""
        return [conn.info.backend_pid for conn in self._idle if not conn.closed]

    def take(self, login: tuple[str, str]) -> _KeptConnection | None:
        """A kept session of ``login``, if there is one."""
        if login != self._login or not self._idle:
            return None
        return self._idle.pop()

    def opened(self, conn: _KeptConnection, login: tuple[str, str]) -> None:
        """``conn`` was just opened for ``login``: it may be kept when its pool closes."""
        if self._login is None:
            self._login = login
        if login == self._login:
            conn._kept = self

    @contextmanager
    def parking(self) -> Iterator[None]:
        """For the block (a pool's ``close``), closing an idle connection keeps it instead."""
        self._parking = True
        try:
            yield
        finally:
            self._parking = False

    def park(self, conn: _KeptConnection) -> bool:
        """Keep ``conn`` instead of closing it; whether it was kept."""
        if not self._parking or len(self._idle) >= self.limit or not _reusable(conn):
            return False
        self._idle.append(conn)
        return True

    async def reset(self) -> None:
        """Bring every kept session back to the state of a new one, and close any that cannot
        be (see ``_RESET``)."""
        sessions, self._idle = self._idle, []
        results = await asyncio.gather(*(_reset(conn) for conn in sessions))
        self._idle = [conn for conn, reset in zip(sessions, results, strict=True) if reset]

    async def close(self) -> None:
        """End every kept session."""
        sessions, self._idle = self._idle, []
        for conn in sessions:
            conn._kept = None
            with suppress(psycopg.Error, OSError):
                await conn.close()


def _reusable(conn: psycopg.AsyncConnection[Any]) -> bool:
    return (
        not conn.closed
        and not conn.broken
        and conn.autocommit
        and conn.pgconn.transaction_status == TransactionStatus.IDLE
        and not conn.lock.locked()
    )


#: What ``DISCARD ALL`` does, but for the statements psycopg prepared (they are the harness's, and
#: psycopg would not know they were gone): every setting back to the login's (``search_path``,
#: time zone, the role's own settings), cursors closed, ``LISTEN`` stopped, session advisory locks
#: released, temporary tables and sequences' session state dropped. It first counts the
#: statements prepared with SQL's ``PREPARE`` (the graded code's, never psycopg's): a session
#: with any is closed.
_RESET = (
    "SELECT count(*) FROM pg_catalog.pg_prepared_statements WHERE from_sql; "
    "CLOSE ALL; RESET SESSION AUTHORIZATION; RESET ROLE; RESET ALL; UNLISTEN *; "
    "SELECT pg_catalog.pg_advisory_unlock_all(); DISCARD TEMP; DISCARD SEQUENCES"
)


async def _reset(conn: _KeptConnection) -> bool:
    """``_RESET`` on ``conn``; whether it is ready for another pool (else it is closed)."""
    if _reusable(conn):
        # Each test runs its own event loop: a lock that code of the last one waited on (and so
        # bound to that loop) would refuse to be waited on in the next.
        conn.lock = asyncio.Lock()
        try:
            cursor = await conn.execute(_RESET)
            row = await cursor.fetchone()
            prepared = next(iter(row.values())) if isinstance(row, dict) else row and row[0]
        except (psycopg.Error, OSError):
            pass
        else:
            if prepared == 0 and _reusable(conn):
                return True
    conn._kept = None
    with suppress(psycopg.Error, OSError):
        await conn.close()
    return False


class _KeptConnection(psycopg.AsyncConnection[Any]):
    """A pool's connection that its ``KeptSessions`` (passed as ``kept``) may hand out again."""

    _kept: KeptSessions | None = None

    @classmethod
    async def connect(  # type: ignore[override]
        cls, conninfo: str = "", *, kept: KeptSessions | None = None, **kwargs: Any
    ) -> _KeptConnection:
        login = (conninfo, str(kwargs.get("options", "")))
        if kept is not None and (conn := kept.take(login)) is not None:
            return conn
        conn = await super().connect(conninfo, **kwargs)
        if kept is not None:
            kept.opened(conn, login)
        return conn

    async def close(self) -> None:
        if self._kept is not None and self._kept.park(self):
            return
        await super().close()


class PostgresBackend:
    dialect = "postgresql"
    # READ COMMITTED, PostgreSQL's default: each statement sees what was committed before it began.
    begin_sql = "BEGIN"

    def __init__(self, config: DatabaseConfig, kept: KeptSessions | None = None) -> None:
        self.config = config
        self.meter = PoolMeter(config.pool_size)
        # Lent-out connections: psycopg_pool's close() leaves them open until returned, and a
        # task cancelled twice may never return one.
        self._lent: set[psycopg.AsyncConnection[Any]] = set()
        self._kept = kept
        options: dict[str, Any] = {
            "autocommit": True,
            "row_factory": dict_row,
            "options": connection_options(config),
        }
        if kept is not None:
            options["kept"] = kept
        self.pool = psycopg_pool.AsyncConnectionPool(
            config.url,
            connection_class=_KeptConnection if kept is not None else psycopg.AsyncConnection,
            min_size=1,
            max_size=config.pool_size,
            timeout=config.pool_timeout,
            open=False,
            kwargs=options,
            name="kata",
        )

    async def open(self) -> None:
        await self.pool.open(wait=True, timeout=max(self.config.pool_timeout, 5.0))

    async def close(self) -> None:
        # One still lent out is closed: whoever borrowed it may be anywhere in its work.
        for conn in list(self._lent):
            await conn.close()
        self._lent.clear()
        if self._kept is None:
            await self.pool.close()
            return
        with self._kept.parking():
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
