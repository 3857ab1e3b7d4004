"""The two database backends behind one interface.

A backend knows its driver: how to open pooled connections, how to run one statement and turn
the answer into ``dict`` rows, and how to adapt Python values (timezone-aware datetimes, ``str``
enums) so that both databases store and compare them the same way. Everything above this layer
(round-trip counting, transactions, the ORM) is backend-agnostic.
"""

from __future__ import annotations

from ..config import DatabaseConfig
from .base import Backend, Result, plain_value

__all__ = ["Backend", "Result", "create_backend", "plain_value"]


def create_backend(config: DatabaseConfig) -> Backend:
    if config.dialect == "sqlite":
        from .sqlite import SQLiteBackend

        return SQLiteBackend(config)
    from .postgres import PostgresBackend

    return PostgresBackend(config)
