"""How long 50,000 jobs take to create, three ways, on each backend (the lesson of Task B).

    .venv/bin/python benchmarks/bench_bulk.py [--rows 50000] [--db sqlite|postgresql|URL ...]

(a) one INSERT per address through ``execute_sql``, all in one transaction: what a first attempt
    at Task B does; each row pays a round trip (on SQLite, the simulated one).
(b) the reference's ``create_campaign_jobs``: multi-row INSERTs of 2,000 rows in one transaction.
(c) the floor, outside the harness: PostgreSQL ``COPY ... FROM STDIN`` on a raw psycopg
    connection; SQLite ``executemany`` in one transaction on a plain ``sqlite3`` connection,
    without the simulated latency.

Each way gets a fresh isolated database. It also prints each backend's simulated latency per round
trip and the measured mean of 1,000 ``SELECT 1`` round trips through the harness.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

import psycopg
from rich.console import Console
from rich.table import Table

from harness import transaction
from harness.devtools.stress import database_configs
from harness.sql.backends.postgres import connection_options
from harness.sql.config import DatabaseConfig
from harness.sql.database import Database, execute_sql
from harness.sql.isolation import isolated_database
from harness.sql.models import Campaign, Job
from harness.worker.solutions import REFERENCE_PATH, load_solution

PINGS = 1000


@dataclass(frozen=True)
class Figure:
    backend: str
    method: str
    rows: int
    seconds: float
    round_trips: int | None


def emails(rows: int) -> list[str]:
    return [f"customer.{i}@example.com" for i in range(rows)]


# Each method returns the seconds of its own insert when set-up must not count (None: time it all).


async def per_row_inserts(
    database: Database, campaign_id: int, addresses: list[str]
) -> float | None:
    async with transaction():
        for email in addresses:
            await execute_sql(
                "INSERT INTO jobs (campaign_id, email) VALUES (?, ?)", [campaign_id, email]
            )
    return None


async def reference_bulk(
    database: Database, campaign_id: int, addresses: list[str]
) -> float | None:
    await load_solution(REFERENCE_PATH).create_campaign_jobs(campaign_id, addresses)
    return None


async def raw_floor(database: Database, campaign_id: int, addresses: list[str]) -> float | None:
    """Outside the harness; the connection's set-up is not part of the insert."""
    config = database.config
    if database.dialect == "postgresql":
        async with await psycopg.AsyncConnection.connect(
            config.url, options=connection_options(config)
        ) as conn:
            started = time.perf_counter()
            cursor = conn.cursor()
            async with cursor, cursor.copy("COPY jobs (campaign_id, email) FROM STDIN") as copy:
                for email in addresses:
                    await copy.write_row((campaign_id, email))
            await conn.commit()
            return time.perf_counter() - started
    lite = sqlite3.connect(config.sqlite_path, isolation_level=None)
    try:
        started = time.perf_counter()
        lite.execute("BEGIN")
        lite.executemany(
            "INSERT INTO jobs (campaign_id, email) VALUES (?, ?)",
            [(campaign_id, email) for email in addresses],
        )
        lite.execute("COMMIT")
        return time.perf_counter() - started
    finally:
        lite.close()


Method = Callable[[Database, int, list[str]], Awaitable[float | None]]

METHODS: list[tuple[str, Method, bool]] = [
    ("(a) one INSERT per row, one transaction", per_row_inserts, True),
    ("(b) reference create_campaign_jobs", reference_bulk, True),
    ("(c) raw floor", raw_floor, False),
]


def floor_name(dialect: str) -> str:
    if dialect == "postgresql":
        return "(c) raw floor: COPY FROM STDIN (psycopg)"
    return "(c) raw floor: sqlite3 executemany, no latency"


async def measure(config: DatabaseConfig, rows: int) -> tuple[list[Figure], float]:
    figures = []
    addresses = emails(rows)
    for name, method, counted in METHODS:
        async with isolated_database(config, purpose="bench") as database:
            campaign = await Campaign.create(name="bench")
            database.round_trips.reset()
            started = time.perf_counter()
            own = await method(database, campaign.id, addresses)
            seconds = time.perf_counter() - started if own is None else own
            if method is raw_floor:
                name = floor_name(database.dialect)
            trips = database.round_trips.count if counted else None
            created = await Job.filter(campaign_id=campaign.id).count()
            if created != rows:
                raise AssertionError(f"{name} created {created} of {rows} jobs")
            figures.append(Figure(database.dialect, name, rows, seconds, trips))
    async with isolated_database(config, purpose="bench") as database:
        started = time.perf_counter()
        for _ in range(PINGS):
            await execute_sql("SELECT 1")
        ping = (time.perf_counter() - started) / PINGS
    return figures, ping


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=50_000)
    parser.add_argument(
        "--db", action="append", default=[], help="sqlite, postgresql or a URL (default: both)"
    )
    args = parser.parse_args()
    console = Console(width=170)
    results = Table(title=f"Creating {args.rows:,} jobs")
    for column in ("backend", "method", "rows", "seconds", "rows/s", "round trips"):
        results.add_column(column, justify="left" if column in ("backend", "method") else "right")
    latency = Table(title=f"Round trips (mean of {PINGS:,} SELECT 1 through execute_sql)")
    for column in ("backend", "simulated latency / round trip", "measured SELECT 1"):
        latency.add_column(column, justify="left" if column == "backend" else "right")
    for config in database_configs(args.db):
        console.print(f"measuring {config.describe()} ...")
        figures, ping = await measure(config, args.rows)
        for f in figures:
            results.add_row(
                f.backend,
                f.method,
                f"{f.rows:,}",
                f"{f.seconds:.3f}",
                f"{f.rows / f.seconds:,.0f}",
                "n/a (outside the harness)" if f.round_trips is None else f"{f.round_trips:,}",
            )
        latency.add_row(
            config.dialect,
            f"{config.round_trip_latency * 1000:.3f} ms",
            f"{ping * 1000:.3f} ms",
        )
    console.print(results)
    console.print(latency)


if __name__ == "__main__":
    asyncio.run(main())
