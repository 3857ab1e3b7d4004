"""A throwaway database for one test or one grading run, cleaned up afterwards.

On PostgreSQL it is a fresh schema with a name we generate (``kata_<purpose>_<random>``): we
create it, point ``search_path`` at it, and drop exactly that schema at the end, so nothing else
in the user's database is ever touched. On SQLite it is a new file in a temporary directory.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import psycopg

from .config import DatabaseConfig
from .database import Database, open_database
from .schema import create_schema

__all__ = ["isolated_config", "isolated_database"]


@asynccontextmanager
async def isolated_config(
    base: DatabaseConfig, purpose: str = "run"
) -> AsyncIterator[DatabaseConfig]:
    """A config pointing at a new, empty database space; removed on exit."""
    if base.dialect == "sqlite":
        directory = Path(tempfile.mkdtemp(prefix=f"kata-{purpose}-"))
        try:
            yield base.with_options(url=f"sqlite:///{directory / 'kata.db'}")
        finally:
            shutil.rmtree(directory, ignore_errors=True)
        return
    schema = f"kata_{purpose}_{secrets.token_hex(5)}"
    async with await psycopg.AsyncConnection.connect(base.url, autocommit=True) as conn:
        # CREATE SCHEMA without IF NOT EXISTS: if the name were taken we must not adopt it.
        await conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield base.with_options(schema=schema)
    finally:
        async with await psycopg.AsyncConnection.connect(base.url, autocommit=True) as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")


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
