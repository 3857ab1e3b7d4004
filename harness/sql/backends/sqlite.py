"""SQLite through aiosqlite: the zero-setup default.

Each pooled connection is its own aiosqlite thread on one database file in WAL mode, so readers
never block the writer and concurrent workers really are concurrent (unlike one shared
connection, where "transactions" of different workers would interleave on one handle).
Transactions start with ``BEGIN IMMEDIATE``: the write lock is taken up front, so a transaction
that reads and then writes cannot fail half-way with "database is locked" — it waits, up to the
busy timeout, at its start.

Timestamps are stored as fixed-width ISO-8601 UTC text (``2026-01-02 03:04:05.000006+00:00``),
which sorts and compares correctly as text; the column type ``TIMESTAMPTZ`` makes sqlite3 turn
them back into aware datetimes.

Every connection gets an authorizer once the harness's own setup pragmas have run: the code it
serves reaches this one file and nothing else (no ``ATTACH``, no extensions, no pragma that
changes the file or the schema; see ``ALLOWED_PRAGMAS``).
"""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import Any

import aiosqlite

from ..config import DatabaseConfig
from ..pool import ConnectionPool, PoolStats
from .base import Result, plain_value

__all__ = ["SQLiteBackend", "format_timestamp", "parse_timestamp"]

_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f+00:00"


def format_timestamp(value: datetime) -> str:
    """The one text form of a timestamp in SQLite. Naive datetimes are taken to be UTC."""
    if value.tzinfo is not None:
        value = value.astimezone(UTC)
    return value.strftime(_TIMESTAMP_FORMAT)


def parse_timestamp(raw: bytes | str) -> datetime:
    text = raw.decode() if isinstance(raw, bytes) else raw
    parsed = datetime.fromisoformat(text)
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed


#: Pragmas the code on a pooled connection may still run with an argument: reads that take a name
#: (``table_info(jobs)``, ``pragma_table_info('jobs')``), and per-connection knobs that change
#: how this connection waits, caches or orders, never what the file holds or how it is written.
#: Every other pragma with an argument is refused: ``journal_mode``, ``locking_mode`` and
#: ``synchronous`` change how the file is written (and would make Task B cheaper than on
#: PostgreSQL), ``writable_schema``, ``schema_version``, ``user_version`` and ``application_id``
#: write the file's header or schema, ``foreign_keys``, ``ignore_check_constraints`` and
#: ``defer_foreign_keys`` switch off rules PostgreSQL always enforces, ``trusted_schema`` and
#: ``temp_store_directory`` reach outside the file. A pragma without an argument only reads.
ALLOWED_PRAGMAS = frozenset(
    {
        # reads that take an argument
        "table_info",
        "table_xinfo",
        "table_list",
        "index_list",
        "index_info",
        "index_xinfo",
        "foreign_key_list",
        "foreign_key_check",
        "integrity_check",
        "quick_check",
        # this connection's own behaviour
        "busy_timeout",
        "cache_size",
        "cache_spill",
        "mmap_size",
        "temp_store",
        "query_only",
        "recursive_triggers",
        "reverse_unordered_selects",
        "automatic_index",
        "analysis_limit",
        "soft_heap_limit",
        "hard_heap_limit",
        "threads",
        "optimize",
        "wal_checkpoint",
    }
)


def _refusal(action: int, arg1: str | None, arg2: str | None) -> str | None:
    """What the authorizer refuses, as the end of "the grader does not let a solution ...";
    ``None`` for what it allows."""
    if action == sqlite3.SQLITE_ATTACH:
        return "ATTACH another database file (or VACUUM INTO one)"
    if action == sqlite3.SQLITE_DETACH:
        return "DETACH a database"
    if action == sqlite3.SQLITE_FUNCTION and arg2 == "load_extension":
        return "load a SQLite extension"
    if action == sqlite3.SQLITE_PRAGMA and arg2 is not None and arg1 not in ALLOWED_PRAGMAS:
        return f"set PRAGMA {arg1}, which changes the database file or its rules"
    return None


class _Authorizer:
    """One connection's authorizer; remembers what it refused last, for the error's message
    (the driver only says "not authorized")."""

    def __init__(self) -> None:
        self.refused: str | None = None

    def __call__(
        self, action: int, arg1: str | None, arg2: str | None, _db: str | None, _by: str | None
    ) -> int:
        refused = _refusal(action, arg1, arg2)
        if refused is None:
            return sqlite3.SQLITE_OK
        self.refused = refused
        return sqlite3.SQLITE_DENY


# The converter registry is sqlite3's own module-level table; the name is ours alone.
sqlite3.register_converter("TIMESTAMPTZ", parse_timestamp)


def _adapt(value: Any) -> Any:
    if isinstance(value, datetime):
        return format_timestamp(value)
    return plain_value(value)


class SQLiteBackend:
    dialect = "sqlite"
    begin_sql = "BEGIN IMMEDIATE"

    def __init__(self, config: DatabaseConfig) -> None:
        self.config = config
        self.pool: ConnectionPool[aiosqlite.Connection] = ConnectionPool(
            self._connect,
            self._disconnect,
            max_size=config.pool_size,
            timeout=config.pool_timeout,
            # A connection given back mid-transaction is not safe to hand to anyone else.
            check=lambda conn: not conn.in_transaction,
        )
        self._authorizers: dict[aiosqlite.Connection, _Authorizer] = {}

    async def _connect(self) -> aiosqlite.Connection:
        pending = aiosqlite.connect(
            self.config.sqlite_path,
            isolation_level=None,  # autocommit: the harness issues BEGIN/COMMIT itself
            detect_types=sqlite3.PARSE_DECLTYPES,
            timeout=self.config.busy_timeout,
            check_same_thread=False,
        )
        # aiosqlite's worker thread is not a daemon: one connection that escaped closing (say,
        # abandoned by a candidate's runaway task) would keep the grader's process from exiting.
        thread = getattr(pending, "_thread", None)
        if thread is not None and not thread.is_alive():
            thread.daemon = True
        conn = await pending
        try:
            conn.row_factory = sqlite3.Row
            await conn.execute("PRAGMA journal_mode=WAL")
            await conn.execute("PRAGMA synchronous=NORMAL")
            await conn.execute("PRAGMA foreign_keys=ON")
            await conn.execute(f"PRAGMA busy_timeout={int(self.config.busy_timeout * 1000)}")
            # Off by default; said again, where this Python's sqlite3 can load extensions at all.
            if hasattr(sqlite3.Connection, "enable_load_extension"):
                await conn.enable_load_extension(False)
            authorizer = _Authorizer()
            await conn.set_authorizer(authorizer)
        except BaseException:
            # Cancelled (a worker stopped at drain) or failed mid-setup: nobody will ever close
            # this connection, so end its thread now.
            conn.stop()
            raise
        self._authorizers[conn] = authorizer
        return conn

    async def _disconnect(self, conn: aiosqlite.Connection) -> None:
        self._authorizers.pop(conn, None)
        await conn.close()

    async def open(self) -> None:
        await self.pool.open()

    async def close(self) -> None:
        await self.pool.close()

    async def getconn(self) -> aiosqlite.Connection:
        return await self.pool.getconn()

    async def putconn(self, conn: aiosqlite.Connection) -> None:
        await self.pool.putconn(conn)

    async def execute(self, conn: aiosqlite.Connection, sql: str, params: list[Any]) -> Result:
        cursor = await conn.execute(sql, [_adapt(value) for value in params])
        try:
            rows = await cursor.fetchall()
            return Result([dict(row) for row in rows], cursor.rowcount)
        finally:
            await cursor.close()

    def refusal(self, conn: aiosqlite.Connection, error: Exception) -> str | None:
        """What the authorizer refused, if ``error`` is its "not authorized"."""
        authorizer = self._authorizers.get(conn)
        if authorizer is None or not isinstance(error, sqlite3.DatabaseError):
            return None
        refused, authorizer.refused = authorizer.refused, None
        # SQLITE_AUTH, or for a refused function "not authorized to use function: ..."
        denied = error.sqlite_errorname == "SQLITE_AUTH" or str(error).startswith("not authorized")
        return refused if denied else None

    def stats(self) -> PoolStats:
        return self.pool.stats()

    def pop_stats(self) -> PoolStats:
        return self.pool.meter.pop_stats()
