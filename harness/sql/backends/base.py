"""What every backend offers: one statement's ``Result``, the ``Backend`` interface, and how a
Python value goes to either driver."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from ..config import DatabaseConfig
from ..pool import PoolStats

__all__ = ["Backend", "Result", "plain_value"]


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
    def refusal(self, conn: Any, error: Exception) -> str | None:
        """What the grading's least privilege refused, if ``error`` is such a refusal: the end
        of "the grader does not let a solution ..." (``PrivilegeRefused``)."""
        ...

    def stats(self) -> PoolStats: ...
    def pop_stats(self) -> PoolStats: ...


def plain_value(value: Any) -> Any:
    """Enums go to the database as their value on both drivers (psycopg would send the name)."""
    return value.value if isinstance(value, Enum) else value
