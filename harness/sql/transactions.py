"""``transaction()``: one pooled connection bound to the running task until commit or rollback.

    async with transaction():
        job = await Job.get(id=job_id)          # all on one connection,
        await execute_sql("UPDATE ...", [...])  # committed together,
                                                # rolled back on any exception (or crash)

Nested blocks become savepoints: an exception inside rolls back only the inner block.

The transaction belongs to the *task* that opened it. The scope (``harness.scope``) carries it,
and ``current_transaction()`` only reports it to that same task: a task spawned inside the block
inherits the variable but not the transaction, and borrows connections of its own. That lets the
fake APIs tell, reliably, whether the caller is holding a transaction (a connection and, on
SQLite, the database's write lock) while it waits on the network.

Isolation, and what it means for claiming a job:

* SQLite: ``BEGIN IMMEDIATE`` takes the single write lock at the start, so transactions that
  write are serialised. A claim done as SELECT-then-UPDATE inside it is safe but holds the lock
  for two round trips; one ``UPDATE ... RETURNING`` statement is atomic even without it.
* PostgreSQL: READ COMMITTED (the default). Two transactions can both SELECT the same pending
  row and both UPDATE it — a double claim — unless the UPDATE re-checks ``status = 'pending'``
  (and the caller handles losing) or the SELECT locks the row with ``FOR UPDATE SKIP LOCKED``,
  which also lets twenty workers pass each other instead of queueing on one row.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from ..scope import caller_name, current, current_task, scoped
from .database import Database, current_database

__all__ = ["Transaction", "current_transaction", "transaction"]

_savepoint_names = itertools.count(1)


@dataclass(eq=False)
class Transaction:
    """An open transaction: its database, connection, owner and when it began."""

    database: Database
    connection: Any
    task: asyncio.Task[Any] | None
    owner: str
    started_at: float = field(default_factory=lambda: asyncio.get_running_loop().time())
    depth: int = 0

    def age(self) -> float:
        return asyncio.get_running_loop().time() - self.started_at


def current_transaction() -> Transaction | None:
    """The transaction the running task holds, or ``None``."""
    return current().held_transaction()


@asynccontextmanager
async def transaction(database: Database | None = None) -> AsyncIterator[Transaction]:
    """Run the block in one transaction (a savepoint when already inside one)."""
    database = database or current_database()
    outer = current_transaction()
    if outer is not None and outer.database is database:
        async with _savepoint(outer):
            yield outer
        return
    async with database.connection() as conn:
        await database.run_on(conn, database.backend.begin_sql)
        tx = Transaction(database, conn, current_task(), caller_name())
        database.open_transactions.add(tx)
        try:
            with scoped(transaction=tx):
                try:
                    yield tx
                except BaseException:
                    await _finish(tx, "ROLLBACK")
                    raise
                else:
                    try:
                        await _finish(tx, "COMMIT")
                    except BaseException:
                        # SQLite keeps the transaction open when COMMIT fails (e.g. busy): end it.
                        await _finish(tx, "ROLLBACK", quiet=True)
                        raise
        finally:
            database.open_transactions.discard(tx)


async def _finish(tx: Transaction, statement: str, *, quiet: bool = False) -> None:
    try:
        # Shielded: a cancellation arriving now must not leave the connection mid-transaction.
        await asyncio.shield(tx.database.run_on(tx.connection, statement))
    except Exception:
        if not quiet and statement == "COMMIT":
            raise
        # A failed ROLLBACK leaves the connection in a state the pool will detect and discard.


@asynccontextmanager
async def _savepoint(tx: Transaction) -> AsyncIterator[None]:
    name = f"kata_sp_{next(_savepoint_names)}"
    await tx.database.run_on(tx.connection, f"SAVEPOINT {name}")
    tx.depth += 1
    try:
        yield
    except BaseException:
        await tx.database.run_on(tx.connection, f"ROLLBACK TO SAVEPOINT {name}")
        await tx.database.run_on(tx.connection, f"RELEASE SAVEPOINT {name}")
        raise
    else:
        await tx.database.run_on(tx.connection, f"RELEASE SAVEPOINT {name}")
    finally:
        tx.depth -= 1
