"""The database a run talks to: one pool, one round-trip counter, the open transactions.

The active database is part of the current scope (``harness.scope``), entered by
``open_database()`` or by a run's ``World``. The candidate never passes it around:
``execute_sql``, ``transaction()`` and the ORM find it there, and ``db`` is a proxy to it
(``db.dialect``). Every statement goes through ``Database.run``, the one place that counts round
trips, calls the hooks registered on it (crash injection before writes, the grader's history and
choreographies after each statement), and attaches the SQL to a driver's error, or turns the
database's refusal of a statement the grading's least privilege forbids into ``PrivilegeRefused``.
"""

from __future__ import annotations

import asyncio
import reprlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from ..exceptions import (
    NaiveDatetimeError,
    NoActiveDatabase,
    PrivilegeRefused,
    RoundTripBudgetExceeded,
    TooManyParameters,
)
from ..ownership import code_site
from ..scope import caller_name, current, scoped
from .backends import Backend, Result, create_backend
from .config import DatabaseConfig
from .pool import PoolStats
from .sqlparams import is_write

if TYPE_CHECKING:
    from .transactions import Transaction

__all__ = [
    "Database",
    "RoundTrips",
    "current_database",
    "db",
    "execute_sql",
    "open_database",
]

_sql_repr = reprlib.Repr()
_sql_repr.maxstring = 400
_sql_repr.maxlist = 12
_sql_repr.maxtuple = 12

#: Parameters one statement may carry: PostgreSQL's limit, enforced on every backend.
MAX_PARAMETERS = 65_535


@dataclass
class RoundTrips:
    """How many statements went to the database (each is one network round trip).

    Counted, not timed, so that the grader can hold Task B to a budget deterministically.
    """

    count: int = 0
    writes: int = 0
    #: Statements that opened a transaction (``BEGIN``): one per batch is not all or nothing.
    transactions: int = 0
    #: When set, the statement that would make ``count`` exceed it raises
    #: ``RoundTripBudgetExceeded`` instead of running (a ROLLBACK still runs, to clean up), and
    #: so does every statement after it: code that swallows the stop cannot carry on.
    limit: int | None = None
    #: The first stop since ``reset()``, kept even if the caller's code swallowed it, so that
    #: the verdict comes from the budget and not from whatever the code did next.
    exceeded: RoundTripBudgetExceeded | None = None

    def reset(self) -> None:
        self.count = 0
        self.writes = 0
        self.transactions = 0
        self.exceeded = None

    def spend(self, sql: str, writes: bool) -> None:
        verb = sql.lstrip()[:8].upper()
        if (
            self.limit is not None
            and self.count >= self.limit
            and not verb.startswith(("ROLLBACK", "RELEASE"))
        ):
            stop = RoundTripBudgetExceeded(self.limit, self.writes)
            self.exceeded = self.exceeded or stop
            raise stop
        self.count += 1
        self.writes += writes
        self.transactions += verb.startswith("BEGIN")


class Database:
    """An open connection pool to one database, with the harness's bookkeeping around it."""

    #: Called before every INSERT/UPDATE/DELETE of every database, in the caller's task, with
    #: its SQL; may raise. Where crash injection registers itself (``harness.world.crashes``).
    before_write: ClassVar[list[Callable[[str], None]]] = []

    def __init__(
        self, config: DatabaseConfig | None = None, backend: Backend | None = None
    ) -> None:
        self.config = config or DatabaseConfig()
        #: ``backend``: one made for ``config`` by its owner (the grader's reused space gives its
        #: PostgreSQL backend the role's sessions kept from the last test); else a new one.
        self.backend: Backend = backend or create_backend(self.config)
        self.round_trips = RoundTrips()
        #: Seconds of simulated network added to each statement (see ``Scope.latency``).
        self.latency = self.config.round_trip_latency
        #: Transactions open right now (for dashboards: how many, held by whom, for how long).
        self.open_transactions: set[Transaction] = set()
        #: caller -> (SQL, monotonic start) of every statement under way: a statement that has
        #: been running for long is waiting on a lock (or, on SQLite, on the write lock).
        self.in_flight: dict[str, tuple[str, float]] = {}
        #: Awaited after every statement with its SQL and result, in the caller's task: where the
        #: grader's choreographies pause a worker between its read and its write.
        self.after_statement: list[Callable[[str, Result], Awaitable[None]]] = []
        #: Told of every statement (and of every one that failed) before any hook, at once and
        #: in order: (loop time it was sent, worker, sql, params, rows, rowcount, error).
        self.observers: list[Callable[..., None]] = []
        #: Every statement the grading's least privilege refused, kept even if the caller
        #: swallows the error: the grader fails the test for it all the same.
        self.refusals: list[PrivilegeRefused] = []

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self.backend.dialect

    def __repr__(self) -> str:
        return f"<Database {self.config.describe()}>"

    async def open(self) -> None:
        await self.backend.open()

    async def close(self) -> None:
        await self.backend.close()

    def pool_stats(self) -> PoolStats:
        return self.backend.stats()

    def pop_pool_stats(self) -> PoolStats:
        return self.backend.pop_stats()

    @contextmanager
    def watching(self, after: Callable[[str, Result], Awaitable[None]]) -> Iterator[None]:
        """Await ``after`` after every statement for the block (see ``after_statement``)."""
        self.after_statement.append(after)
        try:
            yield
        finally:
            self.after_statement.remove(after)

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        """Borrow a pooled connection for the block (raises ``PoolTimeout`` when none frees up)."""
        conn = await self.backend.getconn()
        try:
            yield conn
        finally:
            await self.backend.putconn(conn)

    async def run(self, sql: str, params: Sequence[Any] = ()) -> Result:
        """Run one statement: inside the current task's transaction if it holds one, else on a
        connection borrowed for this statement alone."""
        tx = current().held_transaction()
        if tx is not None and tx.database is self:
            return await self.run_on(tx.connection, sql, params)
        async with self.connection() as conn:
            return await self.run_on(conn, sql, params)

    async def run_on(self, conn: Any, sql: str, params: Sequence[Any] = ()) -> Result:
        """Run one statement on ``conn`` (one round trip)."""
        if not isinstance(params, (list, tuple)):
            raise TypeError(
                f"SQL parameters must be a list or tuple, not {type(params).__name__} "
                "(placeholders are ? on every backend)"
            )
        if len(params) > MAX_PARAMETERS:
            # Refused before it is sent or counted, as libpq refuses it: the same verdict on
            # SQLite (whose build here takes 250,000) as on PostgreSQL.
            error = TooManyParameters(len(params), MAX_PARAMETERS, sql)
            error.add_note(f"while running SQL: {_sql_repr.repr(sql)[1:-1]}")
            raise error
        for position, value in enumerate(params, start=1):
            if isinstance(value, datetime) and value.utcoffset() is None:
                # Refused before it is sent, on both backends: the drivers would each guess a
                # zone (SQLite's adapter UTC, psycopg the session's), and neither is the caller's.
                statement = _sql_repr.repr(" ".join(sql.split()))[1:-1]
                target = f"parameter {position} of `{statement}`"
                raise NaiveDatetimeError(value, target, code_site())
        writes = is_write(sql)
        if writes:
            for hook in Database.before_write:
                hook(sql)
        self.round_trips.spend(sql, writes)
        caller = caller_name()
        self.in_flight[caller] = (sql, time.monotonic())
        sent = asyncio.get_running_loop().time()
        try:
            if self.latency and current().latency:
                await asyncio.sleep(self.latency)
            result = await self.backend.execute(conn, sql, list(params))
        except Exception as error:
            for observe in self.observers:
                observe(sent, caller, sql, params, None, None, error)
            refused = self.backend.refusal(conn, error)
            if refused is not None:
                refusal = _refusal(refused, sql)
                self.refusals.append(refusal)
                raise refusal from error
            error.add_note(f"while running SQL: {_sql_repr.repr(sql)[1:-1]}")
            if params:
                error.add_note(f"with parameters: {_sql_repr.repr(list(params))}")
            raise
        finally:
            self.in_flight.pop(caller, None)
        for observe in self.observers:
            observe(sent, caller, sql, params, result.rows, result.rowcount)
        for after in self.after_statement:
            await after(sql, result)
        return result


def _refusal(action: str, sql: str) -> PrivilegeRefused:
    # No "while running SQL" note: the message quotes the statement already.
    return PrivilegeRefused(action, sql, code_site())


def current_database() -> Database:
    """The database opened by the enclosing ``open_database()``."""
    database = current().database
    if database is None:
        raise NoActiveDatabase(
            "no database is open here: the grader, `python -m harness dev` and the scenarios "
            "open one; in your own script use `async with harness.open_database(): ...`"
        )
    return database


@asynccontextmanager
async def open_database(
    config: DatabaseConfig | str | None = None, **options: Any
) -> AsyncIterator[Database]:
    """Open a database (``DATABASE_URL`` or the SQLite default) and make it the active one."""
    if isinstance(config, str):
        config = DatabaseConfig(url=config, **options)
    elif config is None:
        config = DatabaseConfig(**options)
    elif options:
        config = config.with_options(**options)
    database = Database(config)
    await database.open()
    try:
        with scoped(database=database):
            yield database
    finally:
        await database.close()


async def execute_sql(sql: str, params: Sequence[Any] = ()) -> list[dict[str, Any]]:
    """Run raw SQL with ``?`` placeholders on the active database; return its rows as dicts.

    Inside ``transaction()`` it runs on the transaction's connection. Errors are the driver's own
    (``sqlite3.IntegrityError``, ``psycopg.errors.UniqueViolation``, ...) with the SQL attached.
    """
    result = await current_database().run(sql, params)
    return result.rows


class _ActiveDatabase:
    """``db``: the active database, whichever run opened it (``db.dialect``)."""

    def __getattr__(self, name: str) -> Any:
        return getattr(current_database(), name)

    def __repr__(self) -> str:
        database = current().database
        return f"<db: {database.config.describe() if database else 'no database open'}>"


db: Any = _ActiveDatabase()
