"""Plans that do not happen to follow the ids: a claim's order is judged by what it claimed.

A claim whose statement picks a row with ``LIMIT`` and says no order gets whichever row the plan
meets first. On a small table that is often the lowest id (SQLite walks the partial index on
``id``), so the mistake would pass by luck. Instead of reading the SQL, the grader takes the luck
away for the test that judges the order: every pooled connection then answers an unordered
select in an order that is not the ids' —

* SQLite: ``PRAGMA reverse_unordered_selects``, SQLite's own switch for finding exactly this
  mistake (an unordered select comes back in the reverse of its natural order);
* PostgreSQL: index scans off for the session, so an unordered select reads the heap in the order
  the rows were inserted, which the test makes differ from the ids'.

A statement with ``ORDER BY`` (or ``MIN(id)``) is not affected: a correct claim claims the same
jobs either way.
"""

from __future__ import annotations

from contextlib import AsyncExitStack

from harness.sql.database import Database

__all__ = ["unordered_selects_do_not_follow_ids"]

_SETTINGS = {
    "sqlite": ("PRAGMA reverse_unordered_selects = ON",),
    "postgresql": (
        "SET enable_indexscan = off",
        "SET enable_indexonlyscan = off",
        "SET enable_bitmapscan = off",
    ),
}


async def unordered_selects_do_not_follow_ids(database: Database) -> None:
    """Apply the settings above to every connection of ``database``'s pool (the pool keeps its
    connections for the test, which has a database of its own)."""
    async with AsyncExitStack() as stack:
        for _ in range(database.config.pool_size):
            conn = await stack.enter_async_context(database.connection())
            for sql in _SETTINGS[database.dialect]:
                # Straight to the driver: the grader's own setting is no round trip of the worker.
                await database.backend.execute(conn, sql, [])
