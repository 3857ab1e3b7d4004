"""One database space for a whole grading process, emptied between tests.

Making a PostgreSQL schema (with its role, tables, indexes and trigger) and dropping it again for
every graded test costs more than most tests, and every table made and dropped leaves dead rows
in the catalogs (``pg_attribute`` grew to hundreds of megabytes over thousands of gradings).
So a grading process makes its space once, on its first test, and each later test starts from
the same space emptied, which is what a fresh one would be:

* every session of the space's role that is still alive is ended first (a claiming process
  killed at a time limit, a connection the solution leaked), so nothing of one test writes into
  the next, and the role gets back the password the grader logs in with;
* the space's fingerprint (tables, columns, defaults, constraints, indexes, triggers and whether
  they fire, functions, sequences, grants, policies, the role's own settings) must be the one it
  had when it was made: a test that changed the schema (the grader fails it, see
  ``tamper.schema_of``), or anything the grader does not look at, gets a new space, made as
  the first one was;
* the kata's tables (``job_transitions`` too) are emptied, and their ids start at 1 again:
  ``DELETE`` and ``setval`` when they hold a few rows, ``TRUNCATE ... RESTART IDENTITY`` when
  one holds many (it makes new files, which costs more than deleting a few rows).

SQLite keeps a new file per test: it costs a few milliseconds and leaves nothing behind. A run
whose user may not make roles (``LeastPrivilegeWarning``) keeps a new schema per test too: its
code runs as the configured user, whose other sessions cannot be told from the grader's.

The space lives as long as the process: ``close`` drops it at the end of the session. A process
that is killed leaves it behind, and the next run on the database sweeps it (see ``isolation``).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import unquote, urlsplit

import psycopg
from psycopg import sql

from .config import DatabaseConfig
from .database import Database, open_database
from .isolation import Space, isolated_database, open_space
from .schema import TABLES, create_schema
from .transactions import transaction

__all__ = ["ReusedSpace"]

#: How long ending a leftover session of the role may take before the space is made anew.
_END_SESSIONS_MS = 5000

#: Everything in a schema a test could change and the next test would inherit, one row each.
_FINGERPRINT = """
WITH rel AS MATERIALIZED (
    SELECT oid, relname, relkind, relpersistence, relrowsecurity, reloptions, relacl, relowner
      FROM pg_catalog.pg_class WHERE relnamespace = %(schema)s::text::regnamespace
)
SELECT 'relation', relname::text, relkind::text || ' ' || relpersistence::text || ' '
       || relrowsecurity::text || ' ' || coalesce(reloptions::text, '') || ' '
       || coalesce(relacl::text, '') || ' ' || pg_catalog.pg_get_userbyid(relowner)
  FROM rel
UNION ALL
SELECT 'column', rel.relname || '.' || a.attname,
       pg_catalog.format_type(a.atttypid, a.atttypmod) || ' ' || a.attnotnull::text || ' '
       || coalesce(pg_catalog.pg_get_expr(d.adbin, d.adrelid), '')
  FROM rel JOIN pg_catalog.pg_attribute a ON a.attrelid = rel.oid
  LEFT JOIN pg_catalog.pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
 WHERE a.attnum > 0 AND NOT a.attisdropped
UNION ALL
SELECT 'constraint', c.conname::text, pg_catalog.pg_get_constraintdef(c.oid)
  FROM rel JOIN pg_catalog.pg_constraint c ON c.conrelid = rel.oid
UNION ALL
SELECT 'index', rel.relname::text, pg_catalog.pg_get_indexdef(i.indexrelid)
  FROM rel JOIN pg_catalog.pg_index i ON i.indexrelid = rel.oid
UNION ALL
SELECT 'trigger', t.tgname::text, pg_catalog.pg_get_triggerdef(t.oid) || ' ' || t.tgenabled::text
  FROM rel JOIN pg_catalog.pg_trigger t ON t.tgrelid = rel.oid
 WHERE NOT t.tgisinternal
UNION ALL
SELECT 'sequence', rel.relname::text,
       concat_ws(' ', s.seqstart, s.seqincrement, s.seqmin, s.seqmax, s.seqcycle)
  FROM rel JOIN pg_catalog.pg_sequence s ON s.seqrelid = rel.oid
UNION ALL
SELECT 'policy', p.polname::text, coalesce(pg_catalog.pg_get_expr(p.polqual, p.polrelid), '')
  FROM rel JOIN pg_catalog.pg_policy p ON p.polrelid = rel.oid
UNION ALL
SELECT 'function', p.oid::regprocedure::text,
       pg_catalog.md5(p.prosrc) || ' ' || coalesce(p.proconfig::text, '') || ' '
       || p.prosecdef::text || ' ' || coalesce(p.proacl::text, '')
  FROM pg_catalog.pg_proc p WHERE p.pronamespace = %(schema)s::text::regnamespace
UNION ALL
SELECT 'constraint', c.conname::text, pg_catalog.pg_get_constraintdef(c.oid)
  FROM pg_catalog.pg_constraint c
 WHERE c.connamespace = %(schema)s::text::regnamespace AND c.conrelid = 0
UNION ALL
SELECT 'type', t.typname::text, t.typtype::text
  FROM pg_catalog.pg_type t WHERE t.typnamespace = %(schema)s::text::regnamespace
   AND t.typrelid = 0 AND t.typelem = 0
UNION ALL
SELECT 'schema', n.nspname::text, coalesce(n.nspacl::text, '') || ' '
       || pg_catalog.pg_get_userbyid(n.nspowner)
  FROM pg_catalog.pg_namespace n WHERE n.nspname = %(schema)s::text
UNION ALL
SELECT 'role settings', %(role)s::text, coalesce(s.setconfig::text, '')
  FROM pg_catalog.pg_db_role_setting s
 WHERE s.setrole = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %(role)s::text)
UNION ALL
SELECT 'large objects', %(role)s::text, count(*)::text
  FROM pg_catalog.pg_largeobject_metadata
 WHERE lomowner = (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = %(role)s::text)
ORDER BY 1, 2, 3
"""

#: Above this many rows in a table, TRUNCATE (a new file for each table and index: about 0.1 s
#: in all) is cheaper than DELETE (a few milliseconds for a few rows), and leaves no dead rows.
_DELETE_AT_MOST = 1000
#: Whether a table holds more than ``_DELETE_AT_MOST`` rows, for each of the kata's tables.
_BIG = "SELECT " + ", ".join(
    f"(SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT {_DELETE_AT_MOST + 1}) AS t) "
    f"> {_DELETE_AT_MOST} AS {table}"
    for table in TABLES
)
_TRUNCATE = f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"
#: The tables in an order that deletes rows before the rows they refer to.
_DELETES = [f"DELETE FROM {table}" for table in TABLES]
#: Ids start at 1 again, as in a new table (``setval`` is not transactional, and cheap).
_RESTART = "SELECT " + ", ".join(
    f"pg_catalog.setval(pg_catalog.pg_get_serial_sequence('{table}', 'id'), 1, false)"
    for table in TABLES
    if table != "kata_meta"
)


class ReusedSpace:
    """The database of each graded test: ``async with space.database() as database``. One per
    grading process and configured database; ``close()`` once the session is over."""

    def __init__(self, base: DatabaseConfig, purpose: str = "grade") -> None:
        self.base = base
        self.purpose = purpose
        self._space: Space | None = None
        self._fingerprint: list[tuple[Any, ...]] | None = None
        #: How many spaces this process has made: 1 unless a test changed one.
        self.made = 0
        #: Why each space after the first was made ("the schema changed: ..."), for diagnosis.
        self.remade: list[str] = []

    @asynccontextmanager
    async def database(self) -> AsyncIterator[Database]:
        """A database with the kata's schema and no rows, as ``isolated_database`` gives, and
        active for the block."""
        if self.base.dialect == "sqlite":
            async with isolated_database(self.base, purpose=self.purpose) as database:
                yield database
            return
        space, made = await self._ready()
        if space.role is None:  # no role of its own: a schema per test, as before
            try:
                async with open_database(space.config) as database:
                    await create_schema(database)
                    database.round_trips.reset()
                    yield database
            finally:
                self._space = None
                await space.close()
            return
        async with open_database(space.config) as database:
            if made:
                await create_schema(database)
                self._fingerprint = await _fingerprint(space)
            else:
                await _empty(database)
            database.round_trips.reset()
            yield database

    async def _ready(self) -> tuple[Space, bool]:
        """The space to use, emptied of sessions and checked; whether it was just made."""
        space = self._space
        if space is not None:
            try:
                if not await _end_sessions(space):
                    why = "a session of the last test did not end"
                elif (now := await _fingerprint(space)) != self._fingerprint:
                    changed = sorted(set(now) ^ set(self._fingerprint or []))
                    why = f"the last test changed the space: {changed[0]}"
                else:
                    return space, False
            except psycopg.Error as error:  # the admin's connection broke
                why = f"{type(error).__name__}: {error}"
            self.remade.append(why)
            await self._discard()
        self._space = await open_space(self.base, self.purpose)
        self.made += 1
        return self._space, True

    async def _discard(self) -> None:
        space, self._space, self._fingerprint = self._space, None, None
        if space is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await space.close()

    async def close(self) -> None:
        """Drop the space (its schema and its role); the next ``database()`` makes a new one."""
        await self._discard()

    def close_now(self) -> None:
        """``close``, from code that runs no event loop (the end of a pytest session)."""
        if self._space is not None:
            asyncio.run(self.close())


async def _empty(database: Database) -> None:
    """Remove every row of the kata's tables, and start their ids at 1 again."""
    async with transaction(database):
        (big,) = (await database.run(_BIG)).rows
        if any(big.values()):
            await database.run(_TRUNCATE)
            return
        for statement in _DELETES:
            await database.run(statement)
        await database.run(_RESTART)


async def _end_sessions(space: Space) -> bool:
    """End every session of the space's role (none is left unless a test left one), and give
    the role back the password the grader logs in with (the role may change its own); whether
    every session ended."""
    assert space.admin is not None and space.role is not None
    cursor = await space.admin.execute(
        "SELECT coalesce(bool_and(pg_catalog.pg_terminate_backend(pid, %s)), true) "
        "FROM pg_catalog.pg_stat_activity WHERE usename = %s AND pid <> pg_backend_pid()",
        [_END_SESSIONS_MS, space.role],
    )
    row = await cursor.fetchone()
    password = unquote(urlsplit(space.config.url).password or "")
    await space.admin.execute(
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(space.role), sql.Literal(password)
        )
    )
    return bool(row and row[0])


async def _fingerprint(space: Space) -> list[tuple[Any, ...]]:
    assert space.admin is not None
    cursor = await space.admin.execute(_FINGERPRINT, {"schema": space.schema, "role": space.role})
    return await cursor.fetchall()
