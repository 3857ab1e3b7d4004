"""A throwaway database for one test or one grading run, cleaned up afterwards.

On PostgreSQL it is a fresh schema with a name we generate (``kata_<purpose>_<random>``), owned by
a role made for it (``kata_role_<same random>``): login, no superuser, no ``CREATEDB`` or
``CREATEROLE``, a member of nothing, ``search_path`` pinned to its schema. Everything the run does
in that schema (the harness's setup and checks, and the candidate's code) logs in as that role,
with a random password, so the server itself refuses what it does not own: dropping another
schema, ``COPY ... PROGRAM``, reading server files. The configured user only creates and drops the
role and the schema. At the end we drop exactly that schema and that role, so nothing else in
the user's database is ever touched.

Roles are cluster-wide and outlive a process that is killed, so a run holds a session-level
advisory lock named after its role for as long as it lives (on the configured user's connection,
kept open for the run). Every new run first sweeps this database's roles of ours whose lock is
free: their run is dead, and the role goes with everything it owns (its schema). A role made from
another database is swept by a run on that database.

Where the configured user may not create roles (neither superuser nor ``CREATEROLE``), or the
role cannot log in (``pg_hba.conf``), the run falls back to the configured user and says so once
per process with a ``LeastPrivilegeWarning``. On SQLite it is a new file in a temporary
directory (the backend's authorizer keeps the code to that file).
"""

from __future__ import annotations

import re
import secrets
import shutil
import tempfile
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from ..exceptions import LeastPrivilegeWarning
from .config import DatabaseConfig
from .database import Database, open_database
from .schema import create_schema

__all__ = [
    "ROLE_PREFIX",
    "RUN_LOCK_CLASS",
    "Space",
    "isolated_config",
    "isolated_database",
    "open_space",
]

#: Every role a run creates is named ``ROLE_PREFIX`` + the random part of its schema's name.
ROLE_PREFIX = "kata_role_"
#: The advisory locks of live runs: (this class, hashtext(role name)). "kata" in ASCII.
RUN_LOCK_CLASS = 0x6B617461
_COMMENT = "kata grading role: owns schema {schema} in database {database}; dropped with it"
_COMMENT_PATTERN = re.compile(r"owns schema (\w+) in database (.+); dropped with it$")

#: The configured URLs this process has already warned about (a warning once, not per test).
_warned: set[str] = set()


@dataclass
class Space:
    """A database space made for one run: a config that points at it, and what removes it."""

    config: DatabaseConfig
    #: The configured database: its user made the space and removes it.
    base: DatabaseConfig
    #: PostgreSQL: the schema, its role (None where the run could not have one), and the
    #: configured user's connection that holds the run's lock and drops both at the end.
    schema: str | None = None
    role: str | None = None
    admin: psycopg.AsyncConnection[Any] | None = None
    #: SQLite: the temporary directory of the database file.
    directory: Path | None = None

    async def close(self) -> None:
        """Remove the space (exactly the schema and role it made); safe to call twice."""
        if self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
            self.directory = None
        if self.schema is None or self.admin is None:
            return
        admin, self.admin = self.admin, None
        try:
            await _drop(admin, self.base, self.schema, self.role)
        finally:
            await admin.close()


async def open_space(base: DatabaseConfig, purpose: str = "run", *, confined: bool = True) -> Space:
    """A new, empty database space (see ``isolated_config``); ``Space.close`` removes it."""
    if base.dialect == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix=f"kata-{purpose}-"))
        config = base.with_options(url=f"sqlite:///{directory / 'kata.db'}")
        return Space(config, base, directory=directory)
    token = secrets.token_hex(5)
    schema = f"kata_{purpose}_{token}"
    admin = await psycopg.AsyncConnection.connect(base.url, autocommit=True)
    try:
        if confined:
            role = await _create_role(admin, base, schema, ROLE_PREFIX + token)
        else:
            role = None
            await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    except BaseException:
        await admin.close()
        raise
    if role is None:
        return Space(base.with_options(schema=schema), base, schema=schema, admin=admin)
    return Space(
        base.with_options(url=role, schema=schema),
        base,
        schema=schema,
        role=ROLE_PREFIX + token,
        admin=admin,
    )


@asynccontextmanager
async def isolated_config(
    base: DatabaseConfig, purpose: str = "run", *, confined: bool = True
) -> AsyncIterator[DatabaseConfig]:
    """A config pointing at a new, empty database space; removed on exit.

    ``confined=False`` logs in as the configured user, for tools that stand in for the user
    (``setup_db.py`` drops and recreates its schema); code being graded never runs so.
    """
    space = await open_space(base, purpose, confined=confined)
    try:
        yield space.config
    finally:
        await space.close()


async def _create_role(
    admin: psycopg.AsyncConnection[Any], base: DatabaseConfig, schema: str, role: str
) -> str | None:
    """Create ``schema`` owned by a new ``role``; return the URL that logs in as it, or ``None``
    (warned) where the configured user must do with itself and ``schema`` is its own."""
    row = await (
        await admin.execute(
            "SELECT rolsuper, rolcreaterole FROM pg_catalog.pg_roles WHERE rolname = current_user"
        )
    ).fetchone()
    superuser, createrole = row or (False, False)
    if not (superuser or createrole):
        _warn_once(base, _fallback_warning("it may not create roles (no CREATEROLE)"))
        # CREATE SCHEMA without IF NOT EXISTS: if the name were taken we must not adopt it.
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        return None
    await _sweep(admin)
    # Taken before the role exists, so that no sweep ever sees the role without its lock.
    await admin.execute(
        "SELECT pg_catalog.pg_advisory_lock(%s, hashtext(%s))", [RUN_LOCK_CLASS, role]
    )
    password = secrets.token_urlsafe(24)
    name, schema_name = sql.Identifier(role), sql.Identifier(schema)
    async with admin.transaction():
        await admin.execute(
            sql.SQL(
                "CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION "
                "NOBYPASSRLS NOINHERIT PASSWORD {}"
            ).format(name, sql.Literal(password))
        )
        if not superuser:  # to create its schema and, at the end, drop what it owns
            await admin.execute(sql.SQL("GRANT {} TO CURRENT_USER").format(name))
        await admin.execute(sql.SQL("CREATE SCHEMA {} AUTHORIZATION {}").format(schema_name, name))
        await admin.execute(sql.SQL("ALTER ROLE {} SET search_path = {}").format(name, schema_name))
        database = (await (await admin.execute("SELECT current_database()")).fetchone() or [""])[0]
        comment = _COMMENT.format(schema=schema, database=database)
        await admin.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(name, sql.Literal(comment)))
        row = await (
            await admin.execute(
                "SELECT has_database_privilege(%s, current_database(), 'CONNECT')", [role]
            )
        ).fetchone()
        if row and not row[0]:
            await admin.execute(
                sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(sql.Identifier(database), name)
            )
    url = _login_url(base.url, role, password)
    try:
        async with await psycopg.AsyncConnection.connect(url) as probe:
            await _check_reach(probe, base, schema)
    except psycopg.OperationalError as error:
        first = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        _warn_once(base, _fallback_warning(f"a role it creates cannot log in ({first})"))
        await _drop(admin, base, schema, role)
        await admin.execute(sql.SQL("CREATE SCHEMA {}").format(schema_name))
        return None
    return url


async def _check_reach(
    probe: psycopg.AsyncConnection[Any], base: DatabaseConfig, schema: str
) -> None:
    """Warn where this database lets every role create outside its own schema (``PUBLIC`` with
    ``CREATE`` on a schema, as on ``public`` before PostgreSQL 15): not ours to revoke."""
    rows = await (
        await probe.execute(
            "SELECT nspname FROM pg_catalog.pg_namespace WHERE nspname <> %s "
            "AND nspname NOT LIKE 'pg\\_%%' AND has_schema_privilege(oid, 'CREATE') ORDER BY 1",
            [schema],
        )
    ).fetchall()
    if rows:
        names = ", ".join(row[0] for row in rows)
        _warn_once(
            base,
            f"every role may create objects in schema {names} of this database, so the "
            f"grading's code may too (REVOKE CREATE ON SCHEMA {names} FROM PUBLIC closes it)",
        )


async def _sweep(admin: psycopg.AsyncConnection[Any]) -> None:
    """Drop the roles (with their schemas) of this database's runs that died: no session holds
    their lock any more. A role another sweep is dropping, or that owns objects elsewhere, stays."""
    rows = await (
        await admin.execute(
            "SELECT rolname, shobj_description(oid, 'pg_authid'), current_database() "
            "FROM pg_catalog.pg_roles WHERE starts_with(rolname, %s)",
            [ROLE_PREFIX],
        )
    ).fetchall()
    for role, comment, database in rows:
        found = _COMMENT_PATTERN.search(comment or "")
        if found is None or found.group(2) != database:
            continue
        locked = await (
            await admin.execute(
                "SELECT pg_catalog.pg_try_advisory_lock(%s, hashtext(%s))", [RUN_LOCK_CLASS, role]
            )
        ).fetchone()
        if not (locked and locked[0]):
            continue  # its run is alive
        try:
            await _drop_role(admin, found.group(1), role)
        except psycopg.Error:
            pass  # dropped meanwhile by another sweep, or it owns objects in another database
        finally:
            await admin.execute(
                "SELECT pg_catalog.pg_advisory_unlock(%s, hashtext(%s))", [RUN_LOCK_CLASS, role]
            )


async def _drop_role(admin: psycopg.AsyncConnection[Any], schema: str, role: str) -> None:
    name = sql.Identifier(role)
    async with admin.transaction():
        await admin.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
        # What else it owns or was granted here (nothing, unless the code managed to).
        await admin.execute(sql.SQL("DROP OWNED BY {} CASCADE").format(name))
        await admin.execute(sql.SQL("DROP ROLE {}").format(name))


async def _drop(
    admin: psycopg.AsyncConnection[Any], base: DatabaseConfig, schema: str, role: str | None
) -> None:
    """Drop exactly the run's schema (and role), on a new connection if ``admin``'s broke."""
    if admin.closed or admin.broken:
        async with await psycopg.AsyncConnection.connect(base.url, autocommit=True) as fresh:
            await _drop(fresh, base, schema, role)
        return
    if role is None:
        await admin.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
        )
        return
    await _drop_role(admin, schema, role)
    await admin.execute(
        "SELECT pg_catalog.pg_advisory_unlock(%s, hashtext(%s))", [RUN_LOCK_CLASS, role]
    )


def _login_url(url: str, user: str, password: str) -> str:
    """``url`` logging in as ``user`` with ``password`` instead of whoever it named."""
    parts = urlsplit(url)
    host = parts.netloc.rpartition("@")[2]
    query = [
        (key, value)
        for key, value in parse_qsl(parts.query, keep_blank_values=True)
        if key not in ("user", "password")
    ]
    userinfo = f"{quote(user, safe='')}:{quote(password, safe='')}"
    return urlunsplit((parts.scheme, f"{userinfo}@{host}", parts.path, urlencode(query), ""))


def _warn_once(base: DatabaseConfig, message: str) -> None:
    key = f"{base.url}\n{message}"
    if key not in _warned:
        _warned.add(key)
        warnings.warn(f"{base.describe()}: {message}", LeastPrivilegeWarning, stacklevel=2)


def _fallback_warning(why: str) -> str:
    return (
        f"the grading's code runs as the configured user, with all of its privileges, because "
        f"{why}; give that user CREATEROLE (or let new roles log in) to confine each run to a "
        "role that owns only its schema"
    )


@asynccontextmanager
async def isolated_database(
    base: DatabaseConfig | None = None, purpose: str = "run", **options: Any
) -> AsyncIterator[Database]:
    """Open (and make active) a fresh database with the kata's schema; drop it afterwards."""
    base = base or DatabaseConfig()
    async with (
        isolated_config(base.with_options(**options), purpose) as config,
        open_database(config) as database,
    ):
        await create_schema(database)
        database.round_trips.reset()
        yield database
