"""One database space for a whole grading process, emptied between tests.

Making a PostgreSQL schema (with its role, tables, indexes and trigger) and dropping it again for
every graded test costs more than most tests, and every table made and dropped leaves dead rows
in the catalogs (``pg_attribute`` grew to hundreds of megabytes over thousands of gradings).
So a grading process makes its space once, on its first test, and each later test starts from
the same space emptied, which is what a fresh one would be:

* every session of the space's role that is still alive is ended first (a claiming process
  killed at a time limit, a connection the solution leaked), so nothing of one test writes into
  the next; all but the grader's own pool's, which are kept from one test to the next (a new
  login and cold server caches for every test and every connection cost more than a short
  test). The grader's sessions are known by their server process ids, taken when their pool
  closed: a session the graded code opened is never one of them, whatever it calls itself;
* each kept session is reset to a new login's state (what ``DISCARD ALL`` resets: settings,
  cursors, temporary tables, ``LISTEN``, session advisory locks, sequences' session state), and
  closed if it cannot be or holds a statement the graded code prepared; one that was still lent
  out, in a transaction or busy when its test ended is closed, never kept (see
  ``KeptSessions`` in ``backends.postgres``);
* the role gets back the password the grader logs in with (the role may change its own): where
  the configured user may read ``pg_authid`` (a superuser), only when the stored password
  changed; otherwise on every test, as setting it costs the server a few milliseconds;
* the space's fingerprint (tables, columns, defaults, constraints, indexes, triggers and whether
  they fire, rules, functions, sequences, grants, policies, the role's own settings) must be the
  one it had when it was made: a test that changed the schema (the grader fails it, see
  ``schema_watch.schema_of``), or anything the grader does not look at, gets a new space, made as
  the first one was (the fingerprint is read while the rows are deleted, on the configured
  user's connection, and the emptied space is thrown away if it differs);
* the kata's tables (``job_transitions`` too) are emptied, and their ids start at 1 again:
  ``DELETE`` and ``setval`` when they hold a few rows, ``TRUNCATE ... RESTART IDENTITY`` when
  one holds many (it makes new files, which costs more than deleting a few rows).

The grading's sessions commit without waiting for the disk, as its SQLite file does
(``_ROLE_SETTINGS``, set on the role when the space is made): what a test sees is the same, and
on a busy machine each COMMIT no longer waits for other processes' writes to be flushed first.

SQLite keeps a new file per test: it costs a few milliseconds and leaves nothing behind. A run
whose user may not make roles (``LeastPrivilegeWarning``) keeps a new schema per test too: its
code runs as the configured user, whose other sessions cannot be told from the grader's.

The space lives as long as the process: ``close`` ends its kept sessions and drops it at the end
of the session. A process that is killed leaves it behind, and the next run on the database
sweeps it (see ``isolation``).
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

from ..scope import scoped
from .backends.postgres import KeptSessions, PostgresBackend
from .config import DatabaseConfig
from .database import Database, open_database
from .isolation import Space, isolated_database, open_space
from .schema import TABLES, create_schema

__all__ = ["ReusedSpace"]

#: How long ending a leftover session of the role may take before the space is made anew.
_END_SESSIONS_MS = 5000

#: What every session of the grading's role gets at login (``ALTER ROLE ... SET``, so the
#: solution's own connections and its worker processes' too, and a kept session's reset brings
#: it back). ``synchronous_commit``: the grading's sessions commit as the grading's SQLite file
#: does (``synchronous=NORMAL`` in WAL mode: durable at the next sync, not at each COMMIT). A
#: commit returns once it is written and is flushed within moments; what every session sees is
#: the same, and only a crash of the database server itself (which no test makes) could lose the
#: last commits. Each commit no longer waits for the disk, which on a busy machine took longer
#: than the statement.
_ROLE_SETTINGS = {"synchronous_commit": "off"}

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
SELECT 'rule', rel.relname || '.' || r.rulename, pg_catalog.pg_get_ruledef(r.oid)
       || ' ' || r.ev_enabled::text
  FROM rel JOIN pg_catalog.pg_rewrite r ON r.ev_class = rel.oid
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
#: Every row of the kata's tables removed and their ids started at 1 again, in one statement
#: (one round trip, and all or nothing): ``TRUNCATE ... RESTART IDENTITY`` when a table holds
#: more than ``_DELETE_AT_MOST`` rows; else ``DELETE`` (the tables in an order that deletes rows
#: before the rows they refer to) and ``setval``, not transactional, and cheap.
_EMPTY = f"""DO $kata_empty$
BEGIN
    IF {
    " OR ".join(
        f"(SELECT count(*) FROM (SELECT 1 FROM {table} LIMIT {_DELETE_AT_MOST + 1}) AS t) "
        f"> {_DELETE_AT_MOST}"
        for table in TABLES
    )
} THEN
        TRUNCATE {", ".join(TABLES)} RESTART IDENTITY CASCADE;
    ELSE
        {" ".join(f"DELETE FROM {table};" for table in TABLES)}
        PERFORM {
    ", ".join(
        f"pg_catalog.setval(pg_catalog.pg_get_serial_sequence('{table}', 'id'), 1, false)"
        for table in TABLES
        if table != "kata_meta"
    )
};
    END IF;
END
$kata_empty$"""


class ReusedSpace:
    """The database of each graded test: ``async with space.database() as database``. One per
    grading process and configured database; ``close()`` once the session is over."""

    def __init__(self, base: DatabaseConfig, purpose: str = "grade") -> None:
        self.base = base
        self.purpose = purpose
        self._space: Space | None = None
        self._fingerprint: list[tuple[Any, ...]] | None = None
        #: The role's sessions that the last test's pool left, for the next test's.
        self._kept = KeptSessions(base.pool_size)
        #: Whether the configured user may read the role's stored password (``pg_authid``), and
        #: the password as stored when the grader last set it (``None``: to be set).
        self._reads_passwords: bool | None = None
        self._stored_password: str | None = None
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
        database = await self._emptied(space, made)
        try:
            with scoped(database=database):
                yield database
        finally:
            await database.close()

    async def _emptied(self, space: Space, made: bool) -> Database:
        """The space's database, open on the role's kept sessions, checked and emptied (or, if
        the last test changed the space, a new space's)."""
        while True:
            if made:
                database = await self._open(space)
                try:
                    with scoped(database=database):
                        await create_schema(database)
                    self._fingerprint = await _fingerprint(space)
                except BaseException:
                    await database.close()
                    raise
                database.round_trips.reset()
                return database
            # The fingerprint is read while the kept sessions are reset and the rows deleted:
            # the last test's other sessions are gone, so nothing changes the space meanwhile.
            now, opened = await asyncio.gather(
                _fingerprint(space), self._open_emptied(space), return_exceptions=True
            )
            if now == self._fingerprint:
                if isinstance(opened, BaseException):
                    raise opened
                opened.round_trips.reset()
                return opened
            # A changed space may not even be emptied (a table dropped): it is made anew.
            if isinstance(opened, Database):
                await opened.close()
            if isinstance(now, BaseException) and not isinstance(now, psycopg.Error):
                raise now
            if isinstance(now, psycopg.Error):  # the admin's connection broke
                why = f"{type(now).__name__}: {now}"
            else:
                changed = sorted(set(now) ^ set(self._fingerprint or []))
                why = f"the last test changed the space: {changed[0]}"
            self.remade.append(why)
            await self._discard()
            space, made = await self._ready()

    async def _open(self, space: Space) -> Database:
        """The space's database, its pool open on the role's kept sessions."""
        database = Database(space.config, PostgresBackend(space.config, self._kept))
        await database.open()
        return database

    async def _open_emptied(self, space: Space) -> Database:
        """Reset the kept sessions (closing those that cannot be), then open the database on
        them and empty it."""
        await self._kept.reset()
        database = await self._open(space)
        try:
            with scoped(database=database):
                await _empty(database)
        except BaseException:
            await database.close()
            raise
        return database

    async def _ready(self) -> tuple[Space, bool]:
        """The space to use, with no session of its role but the grader's kept ones, and the
        role's password the grader's; whether it was just made."""
        space = self._space
        if space is not None:
            try:
                if await self._end_sessions(space, self._kept.pids):
                    return space, False
                why = "a session of the last test did not end"
            except psycopg.Error as error:  # the admin's connection broke
                why = f"{type(error).__name__}: {error}"
            self.remade.append(why)
            await self._discard()
        self._space = space = await open_space(self.base, self.purpose)
        if space.role is not None:
            assert space.admin is not None
            for name, value in _ROLE_SETTINGS.items():
                await space.admin.execute(
                    sql.SQL("ALTER ROLE {} SET {} = {}").format(
                        sql.Identifier(space.role), sql.Identifier(name), sql.Literal(value)
                    )
                )
        self.made += 1
        return space, True

    async def _end_sessions(self, space: Space, kept: list[int]) -> bool:
        """End every session of the space's role but the grader's kept ones (none is left unless
        a test left one), and give the role back the password the grader logs in with, where
        it may have changed; whether every session ended."""
        admin = space.admin
        assert admin is not None and space.role is not None
        if self._reads_passwords is None:
            cursor = await admin.execute(
                "SELECT pg_catalog.has_table_privilege('pg_catalog.pg_authid', 'SELECT')"
            )
            self._reads_passwords = bool((await cursor.fetchone() or [False])[0])
        stored = (
            "(SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = %(role)s)"
            if self._reads_passwords
            else "NULL::text"
        )
        cursor = await admin.execute(
            "SELECT (SELECT coalesce(bool_and(pg_catalog.pg_terminate_backend(pid, %(wait)s)), "
            "true) FROM pg_catalog.pg_stat_activity WHERE usename = %(role)s "
            "AND pid <> pg_catalog.pg_backend_pid() AND pid <> ALL(%(kept)s)), " + stored,
            {"wait": _END_SESSIONS_MS, "role": space.role, "kept": kept},
        )
        ended, password = await cursor.fetchone() or (False, None)
        if not ended:
            # A session that was already exiting (its client closed it as the last test ended)
            # cannot be signalled: it counts as ended once it is gone, which a new look (a new
            # statement, a new snapshot of the server's activity) tells.
            cursor = await admin.execute(
                "SELECT count(*) = 0 FROM pg_catalog.pg_stat_activity WHERE usename = %(role)s "
                "AND pid <> pg_catalog.pg_backend_pid() AND pid <> ALL(%(kept)s)",
                {"role": space.role, "kept": kept},
            )
            ended = bool((await cursor.fetchone() or [False])[0])
        if password is None or password != self._stored_password:
            self._stored_password = await _restore_password(space, self._reads_passwords)
        return bool(ended)

    async def _discard(self) -> None:
        space, self._space, self._fingerprint = self._space, None, None
        self._stored_password = self._reads_passwords = None
        # The sessions go before their role does.
        await self._kept.close()
        if space is not None:
            with contextlib.suppress(psycopg.Error, OSError):
                await space.close()

    async def close(self) -> None:
        """End the kept sessions and drop the space (its schema and its role); the next
        ``database()`` makes a new one."""
        await self._discard()

    def close_now(self) -> None:
        """``close``, from code that runs no event loop (the end of a pytest session)."""
        if self._space is not None or len(self._kept):
            asyncio.run(self.close())


async def _empty(database: Database) -> None:
    """Remove every row of the kata's tables, and start their ids at 1 again."""
    await database.run(_EMPTY)


async def _restore_password(space: Space, reads_passwords: bool) -> str | None:
    """Give the role the password the grader logs in with; return it as stored, where the
    configured user may read it."""
    assert space.admin is not None and space.role is not None
    password = unquote(urlsplit(space.config.url).password or "")
    await space.admin.execute(
        sql.SQL("ALTER ROLE {} PASSWORD {}").format(
            sql.Identifier(space.role), sql.Literal(password)
        )
    )
    if not reads_passwords:
        return None
    cursor = await space.admin.execute(
        "SELECT rolpassword FROM pg_catalog.pg_authid WHERE rolname = %s", [space.role]
    )
    row = await cursor.fetchone()
    return None if row is None else row[0]


async def _fingerprint(space: Space) -> list[tuple[Any, ...]]:
    assert space.admin is not None
    cursor = await space.admin.execute(_FINGERPRINT, {"schema": space.schema, "role": space.role})
    return await cursor.fetchall()
