"""The two database backends behind one interface.

A backend knows its driver: how to open pooled connections, how to run one statement and turn
the answer into ``dict`` rows, and how to adapt Python values (timezone-aware datetimes, ``str``
enums) so that both databases store and compare them the same way. Everything above this layer
(round-trip counting, transactions, the ORM) is backend-agnostic.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from ..config import DatabaseConfig
from ..pool import PoolStats

__all__ = ["Backend", "Result", "create_backend", "plain_value"]


@dataclass(frozen=True)
class Result:
    """One statement's answer: its rows as dicts, and how many rows it changed."""

    rows: list[dict[str, Any]]
    rowcount: int


class Backend(Protocol):
    dialect: str
    config: DatabaseConfig
    begin_sql: str

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    async def getconn(self) -> Any: ...
    async def putconn(self, conn: Any) -> None: ...
    async def execute(self, conn: Any, sql: str, params: list[Any]) -> Result: ...
    def stats(self) -> PoolStats: ...
    def pop_stats(self) -> PoolStats: ...


def plain_value(value: Any) -> Any:
    """Enums go to the database as their value on both drivers (psycopg would send the name)."""
    return value.value if isinstance(value, Enum) else value


def create_backend(config: DatabaseConfig) -> Backend:
    if config.dialect == "sqlite":
        from .sqlite import SQLiteBackend

        return SQLiteBackend(config)
    from .postgres import PostgresBackend

    return PostgresBackend(config)
