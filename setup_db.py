"""Create the kata's database with realistic sample data, once.

    python setup_db.py [--db sqlite|postgresql|URL] [--reset] [--customers N] [--seed S]

It creates the schema and, under a fixed seed, three campaigns, an audience of customers (about
1% of whose addresses the fake SendGrid rejects for good) and, for the first campaign, jobs in
every state: pending (some waiting out a retry), running, completed and failed.

It only ever writes into, and drops, what it created itself, and it marks that with a
``kata_meta`` row. On PostgreSQL everything lives in the schema ``campaign_kata``; on SQLite
``--reset`` drops the kata's tables only. Running it again on a database it already set up
changes nothing and prints the same summary.

Tests and scripts call ``await setup(config, ...)`` directly.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from random import Random
from typing import Any

import click
import psycopg
from faker import Faker
from psycopg import sql
from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from harness.exceptions import SetupRefused
from harness.sql.config import DatabaseConfig, resolve_database_url
from harness.sql.database import Database, current_database, execute_sql, open_database
from harness.sql.models import MAX_ATTEMPTS, JobStatus, Step
from harness.sql.orm import utcnow
from harness.sql.queue import count_by_status
from harness.sql.schema import TABLES, create_schema, drop_tables
from harness.sql.transactions import transaction
from harness.world.faults import stable_digest
from harness.world.services import invalid_email_reason

__all__ = [
    "CREATED_BY",
    "DEFAULT_CUSTOMERS",
    "DEFAULT_SCHEMA",
    "DEFAULT_SEED",
    "SetupRefused",
    "main",
    "setup",
]

DEFAULT_CUSTOMERS = 5000
DEFAULT_SEED = 2024
#: The PostgreSQL schema of the CLI; ``setup()`` uses the config's own schema.
DEFAULT_SCHEMA = "campaign_kata"
#: ``kata_meta`` row that marks a database as made by this script: only then may it be dropped.
CREATED_BY = "campaign-jobs-kata setup_db.py"
#: Fewer customers could not give the first campaign a job in every state.
MIN_CUSTOMERS = 20
#: Share of customers whose address SendGrid rejects permanently (at least 3 of them).
UNDELIVERABLE_SHARE = 0.01
#: Share of customers who already have a job in the first campaign (at least 40 of them).
FIRST_CAMPAIGN_SHARE = 0.10
#: Rows per INSERT: SQLite (before 3.32) allows 999 parameters per statement.
MAX_ROWS_PER_STATEMENT = 300
SQLITE_MAX_PARAMETERS = 999

_CAMPAIGN_NAMES = (
    "Spring Upgrade Offer",
    "Win-back: We Miss You",
    "Annual Plan Renewal Reminder",
    "Launch: Smart Reports Beta",
    "Customer Feedback Survey Q3",
    "Loyalty Rewards Welcome",
    "Webinar Invite: Automating Onboarding",
    "Black Friday Early Access",
)
_INVALID_DOMAINS = ("bounce.invalid", "example.invalid", "mailer.invalid", "nowhere.invalid")
# Typos a real customer list contains: each passes the schema's CHECK (x@y), none is deliverable.
_BROKEN_ADDRESSES = (
    "{first}..{last}@{domain}",
    "{first} {last}@{domain}",
    "{first}@{host}",
    "{first}.@{domain}",
    "{first}.{last}@{host},com",
    "{first}@@{domain}",
)
_MAILBOX_HOSTS = ("example", "mail", "corp", "inbox")
# Pending, running, completed and failed shares of the deliverable jobs; pending takes the rest.
_STATUS_SHARES = {JobStatus.RUNNING: 0.10, JobStatus.COMPLETED: 0.45, JobStatus.FAILED: 0.05}
_JOB_COLUMNS = (
    "campaign_id", "email", "status", "step", "worker_id", "attempts", "last_error",
    "message_id", "sentiment", "action_id", "run_after", "claimed_at", "created_at", "updated_at",
)  # fmt: skip


_MAIN_TABLES = ("campaigns", "customers", "jobs")


# --- the sample data, as plain values --------------------------------------------------------


@dataclass(frozen=True)
class SampleCustomer:
    name: str
    email: str
    signed_up: datetime
    #: Why SendGrid rejects the address, or None when it is deliverable.
    undeliverable: str | None = None


@dataclass(frozen=True)
class SampleData:
    campaigns: list[tuple[str, datetime]]
    customers: list[SampleCustomer]
    #: Jobs of the first campaign: one tuple per row, ``_JOB_COLUMNS`` without ``campaign_id``.
    jobs: list[tuple[Any, ...]]


def generate(customers: int, seed: int, now: datetime) -> SampleData:
    """The sample data for ``customers`` customers: the same seed gives the same names and
    addresses (timestamps are relative to ``now``)."""
    if customers < MIN_CUSTOMERS:
        raise ValueError(f"customers must be at least {MIN_CUSTOMERS}, not {customers}")
    faker = Faker("en_US")
    faker.seed_instance(seed)
    rng: Random = faker.random
    started = now - timedelta(hours=3)
    names = rng.sample(_CAMPAIGN_NAMES, 3)
    campaigns = [(names[0], started), (names[1], now - timedelta(minutes=40)), (names[2], now)]
    people = _customers(faker, customers, now)
    return SampleData(campaigns, people, _first_campaign_jobs(rng, people, seed, started, now))


def _customers(faker: Faker, count: int, now: datetime) -> list[SampleCustomer]:
    rng: Random = faker.random
    undeliverable = max(3, round(count * UNDELIVERABLE_SHARE))
    broken = max(1, undeliverable // 5)
    chosen = rng.sample(range(count), undeliverable)
    bad_positions, broken_positions = set(chosen), set(chosen[:broken])
    signups = sorted(now - timedelta(seconds=rng.randrange(730 * 86400)) for _ in range(count))
    seen: set[str] = set()
    people = []
    for position, signed_up in enumerate(signups):
        if position in broken_positions:
            name, email = _unique(seen, lambda: _broken_address(faker))
        elif position in bad_positions:
            name, email = _unique(seen, lambda: _invalid_tld_address(faker))
        else:
            name, email = _unique(seen, lambda: (faker.name(), faker.unique.safe_email()))
        reason = invalid_email_reason(email)
        # The sprinkle must match what the fake SendGrid rejects, address for address.
        assert (reason is not None) == (position in bad_positions), email
        people.append(SampleCustomer(name, email, signed_up, reason))
    return people


def _unique(seen: set[str], make: Callable[[], tuple[str, str]]) -> tuple[str, str]:
    while True:
        name, email = make()
        if email.lower() not in seen:
            seen.add(email.lower())
            return name, email


def _plain(word: str) -> str:
    return re.sub(r"[^a-z]", "", word.lower()) or "x"


def _broken_address(faker: Faker) -> tuple[str, str]:
    first, last = faker.first_name(), faker.last_name()
    template = faker.random.choice(_BROKEN_ADDRESSES)
    host = faker.random.choice(_MAILBOX_HOSTS)
    email = template.format(first=_plain(first), last=_plain(last), host=host, domain=f"{host}.com")
    return f"{first} {last}", email


def _invalid_tld_address(faker: Faker) -> tuple[str, str]:
    first, last = faker.first_name(), faker.last_name()
    domain = faker.random.choice(_INVALID_DOMAINS)
    return f"{first} {last}", f"{_plain(first)}.{_plain(last)}@{domain}"


def _first_campaign_jobs(
    rng: Random, people: list[SampleCustomer], seed: int, started: datetime, now: datetime
) -> list[tuple[Any, ...]]:
    """Jobs in every state: every undeliverable customer (half already failed, half still
    pending) and a sample of the others, in customer order as a bulk create would make them."""
    size = min(len(people), max(40, round(len(people) * FIRST_CAMPAIGN_SHARE)))
    bad = [i for i, person in enumerate(people) if person.undeliverable]
    good = rng.sample([i for i, p in enumerate(people) if not p.undeliverable], size - len(bad))
    statuses = {i: JobStatus.FAILED if n % 2 == 0 else JobStatus.PENDING for n, i in enumerate(bad)}
    counts = {status: max(1, round(len(good) * share)) for status, share in _STATUS_SHARES.items()}
    shuffled = [s for s, n in counts.items() for _ in range(n)]
    shuffled += [JobStatus.PENDING] * (len(good) - len(shuffled))
    rng.shuffle(shuffled)
    statuses.update(zip(good, shuffled, strict=True))
    # Only deliverable addresses can have been rate limited: SendGrid checks the address first.
    pending = [i for i in good if statuses[i] is JobStatus.PENDING]
    retrying = set(rng.sample(pending, max(1, len(pending) // 3)))
    return [
        _job(rng, people[i], statuses[i], i in retrying, seed, started, now)
        for i in sorted(statuses)
    ]


def _job(
    rng: Random,
    customer: SampleCustomer,
    status: JobStatus,
    retrying: bool,
    seed: int,
    started: datetime,
    now: datetime,
) -> tuple[Any, ...]:
    email, undeliverable = customer.email, customer.undeliverable
    step, worker_id, attempts, last_error = Step.SEND_EMAIL, None, 0, None
    run_after, claimed_at, updated_at = started, None, started
    message_id = sentiment = action_id = None
    to = f"send_email to {email}"
    if status is JobStatus.PENDING and retrying:
        attempts = rng.randint(1, MAX_ATTEMPTS - 2)
        wait = rng.choice((30, 60, 120, 300))
        last_error = (
            f"RateLimitError: 429 Too Many Requests from sendgrid for {to}: retry after {wait}.00 s"
        )
        updated_at = now - timedelta(seconds=rng.randint(1, 20))
        run_after = updated_at + timedelta(seconds=wait)  # still in the future
    elif status is JobStatus.RUNNING:
        step = rng.choice((Step.SEND_EMAIL, Step.ANALYZE, Step.TAKE_ACTION))
        worker_id = f"worker-{rng.randint(1, 20)}"
        claimed_at = updated_at = now - timedelta(seconds=rng.randint(1, 90))
    elif status is JobStatus.COMPLETED:
        step, worker_id = Step.DONE, f"worker-{rng.randint(1, 20)}"
        claimed_at = started + timedelta(seconds=rng.randint(1, 2 * 3600))
        updated_at = claimed_at + timedelta(seconds=rng.randint(1, 30))
    elif status is JobStatus.FAILED:
        worker_id = f"worker-{rng.randint(1, 20)}"
        claimed_at = started + timedelta(seconds=rng.randint(1, 2 * 3600))
        updated_at = claimed_at + timedelta(seconds=rng.randint(1, 60))
        if undeliverable:
            attempts = 1
            last_error = (
                f"InvalidEmailError: 400 Bad Request from sendgrid: {email!r} {undeliverable}"
            )
        else:
            attempts = MAX_ATTEMPTS
            last_error = (
                f"gave up after {MAX_ATTEMPTS} attempts: ServiceTimeoutError: sendgrid did not "
                f"answer {to} within 10.000 s; the request may or may not have taken effect"
            )
    if step is not Step.SEND_EMAIL:
        message_id = _token(seed, "sendgrid", email)
    if step in (Step.TAKE_ACTION, Step.DONE):
        sentiment = rng.choice(("positive", "negative", "neutral"))
    if step is Step.DONE:
        action_id = "act_" + _token(seed, "crm", email, size=12)
    return (
        email, status, step, worker_id, attempts, last_error, message_id, sentiment, action_id,
        run_after, claimed_at, started, updated_at,
    )  # fmt: skip


def _token(*parts: object, size: int = 16) -> str:
    return stable_digest(*parts).hex()[: size * 2]


# --- writing it, once ------------------------------------------------------------------------


async def setup(
    config: DatabaseConfig,
    *,
    reset: bool = False,
    customers: int = DEFAULT_CUSTOMERS,
    seed: int = DEFAULT_SEED,
) -> dict[str, Any]:
    """Create the schema and the sample data unless this script already did; return the counts.

    ``reset`` drops what this script created before (and refuses to drop anything else). On
    PostgreSQL everything goes into ``config.schema``, which must be set: never ``public``.
    Everything after creating the schema happens in one transaction: all or nothing.

    Returns ``created`` (False: it was already set up, nothing changed), what the set-up run
    recorded (``seed``, ``customers``, ``undeliverable_customers``, ``set_up_at``), the rows
    per table (``tables``) and the jobs per status (``jobs_by_status``).
    """
    if customers < MIN_CUSTOMERS:
        raise ValueError(f"customers must be at least {MIN_CUSTOMERS}, not {customers}")
    if config.dialect == "postgresql":
        await _create_postgres_schema(config)
    async with open_database(config) as database, transaction(database):
        owner = await _owner(database)
        if owner == "foreign":
            raise SetupRefused(_refusal(config, reset))
        recorded = None
        if owner == "ours" and reset:
            await _drop(database)
        elif owner == "ours":
            recorded = await _recorded_sample_data()
        created = recorded is None
        if recorded is None:
            recorded = await _populate(database, customers, seed)
        return {"created": created, **recorded, **await _counts()}


async def _create_postgres_schema(config: DatabaseConfig) -> None:
    schema = config.schema
    if schema is None:
        raise ValueError("setup() on PostgreSQL needs config.schema: the kata never uses public")
    if schema == "public" or schema == "information_schema" or schema.startswith("pg_"):
        raise ValueError(f"setup() will not write into the schema {schema!r}: use one of its own")
    async with await psycopg.AsyncConnection.connect(config.url, autocommit=True) as conn:
        await conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))


async def _owner(database: Database) -> str:
    """``"empty"`` (no kata tables: free to use), ``"ours"`` (marked by this script) or
    ``"foreign"`` (tables, or a PostgreSQL schema with objects, made by someone else)."""
    if database.dialect == "sqlite":
        marks = ", ".join("?" * len(TABLES))
        rows = await execute_sql(
            f"SELECT COUNT(*) AS n FROM sqlite_master WHERE type = 'table' AND name IN ({marks})",
            TABLES,
        )
        has_meta = await execute_sql(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'kata_meta'"
        )
    else:
        rows = await execute_sql(
            "SELECT (SELECT COUNT(*) FROM pg_class WHERE relnamespace = n.oid)"
            " + (SELECT COUNT(*) FROM pg_proc WHERE pronamespace = n.oid) AS n"
            " FROM pg_namespace n WHERE n.nspname = ?",
            [database.config.schema],
        )
        has_meta = await execute_sql(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
            " WHERE c.relname = 'kata_meta' AND n.nspname = ?",
            [database.config.schema],
        )
    if not rows or rows[0]["n"] == 0:
        return "empty"
    if has_meta:
        marker = await execute_sql("SELECT value FROM kata_meta WHERE key = 'created_by'")
        if marker and marker[0]["value"] == CREATED_BY:
            return "ours"
    return "foreign"


def _refusal(config: DatabaseConfig, reset: bool) -> str:
    if config.dialect == "postgresql":
        found, it = f"schema {config.schema} exists but was", "it"
    else:
        found, it = f"{config.sqlite_path} has the kata's tables but they were", "them"
    action = f"drop {it}" if reset else f"write sample data into {it}"
    return f"{found} not created by setup_db.py; refusing to {action}"


async def _drop(database: Database) -> None:
    """Drop what this script created: the whole schema on PostgreSQL, the kata's tables on
    SQLite. Inside the caller's transaction, so a failed reset keeps the old data."""
    if database.dialect == "sqlite":
        await drop_tables(database)
        return
    schema = f'"{database.config.schema}"'  # a plain identifier: DatabaseConfig checked it
    await execute_sql(f"DROP SCHEMA {schema} CASCADE")
    await execute_sql(f"CREATE SCHEMA {schema}")


async def _recorded_sample_data() -> dict[str, Any] | None:
    rows = await execute_sql("SELECT value FROM kata_meta WHERE key = 'sample_data'")
    return json.loads(rows[0]["value"]) if rows else None


async def _populate(database: Database, customers: int, seed: int) -> dict[str, Any]:
    now = utcnow()
    data = generate(customers, seed, now)
    await create_schema(database)
    campaign_ids = []
    for name, created_at in data.campaigns:
        rows = await execute_sql(
            "INSERT INTO campaigns (name, created_at) VALUES (?, ?) RETURNING id",
            [name, created_at],
        )
        campaign_ids.append(rows[0]["id"])
    await _insert(
        "customers",
        ("name", "email", "created_at"),
        [(c.name, c.email, c.signed_up) for c in data.customers],
    )
    await _insert("jobs", _JOB_COLUMNS, [(campaign_ids[0], *job) for job in data.jobs])
    recorded = {
        "seed": seed,
        "customers": customers,
        "undeliverable_customers": sum(1 for c in data.customers if c.undeliverable),
        "set_up_at": now.isoformat(timespec="seconds"),
    }
    await _insert(
        "kata_meta",
        ("key", "value"),
        [("created_by", CREATED_BY), ("sample_data", json.dumps(recorded))],
    )
    return recorded


async def _insert(table: str, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Multi-row INSERTs: a few round trips instead of one per row."""
    per_statement = min(MAX_ROWS_PER_STATEMENT, SQLITE_MAX_PARAMETERS // len(columns))
    row_marks = "(" + ", ".join("?" * len(columns)) + ")"
    for start in range(0, len(rows), per_statement):
        chunk = rows[start : start + per_statement]
        await execute_sql(
            f"INSERT INTO {table} ({', '.join(columns)}) VALUES "
            + ", ".join([row_marks] * len(chunk)),
            [value for row in chunk for value in row],
        )


async def _counts() -> dict[str, Any]:
    totals = ", ".join(f"(SELECT COUNT(*) FROM {table}) AS {table}" for table in TABLES)
    tables = (await execute_sql(f"SELECT {totals}"))[0]
    found = await count_by_status(current_database())
    order = [*_MAIN_TABLES, *(t for t in TABLES if t not in _MAIN_TABLES)]
    return {
        "tables": {table: int(tables[table]) for table in order},
        "jobs_by_status": {status.value: found.get(status.value, 0) for status in JobStatus},
    }


# --- the command -----------------------------------------------------------------------------


def render_summary(result: dict[str, Any], where: str, seconds: float) -> Group:
    """What happened, and the rows per table, jobs per status and undeliverable addresses."""
    state = "created" if result["created"] else "already set up: nothing changed"
    headline = Text.assemble(
        (where, "bold"),
        f"\n{state} in {seconds:.2f} s (seed {result['seed']}, {result['customers']:,} customers)",
    )
    table = Table()
    table.add_column("table")
    table.add_column("rows", justify="right")
    for name, count in result["tables"].items():
        table.add_row(name, f"{count:,}")
        if name == "customers":
            table.add_row("  undeliverable", f"{result['undeliverable_customers']:,}", style="dim")
        if name == "jobs":
            for status, n in result["jobs_by_status"].items():
                table.add_row(f"  {status}", f"{n:,}", style="dim")
    return Group(headline, table)


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--db",
    "--database-url",
    "database_url",
    metavar="DB",
    help="sqlite, postgresql or a URL (sqlite:///file.db, postgresql://...)  "
    "[default: DATABASE_URL, else kata.db]",
)
@click.option("--reset", is_flag=True, help="Drop what this script created before; start over.")
@click.option(
    "--customers",
    type=click.IntRange(min=MIN_CUSTOMERS),
    default=DEFAULT_CUSTOMERS,
    show_default=True,
)
@click.option("--seed", type=int, default=DEFAULT_SEED, show_default=True)
def main(database_url: str | None, reset: bool, customers: int, seed: int) -> None:
    """Create the kata's schema and sample data (campaigns, customers, jobs in every state)."""
    try:
        config = DatabaseConfig(url=resolve_database_url(database_url))
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--db") from error
    if config.dialect == "postgresql":
        config = config.with_options(schema=DEFAULT_SCHEMA)
    where = config.describe()
    if config.dialect == "sqlite":
        where += f" at {Path(config.sqlite_path).resolve()}"
    started = time.perf_counter()
    try:
        result = asyncio.run(setup(config, reset=reset, customers=customers, seed=seed))
    except SetupRefused as error:
        raise click.ClickException(str(error)) from error
    except psycopg.OperationalError as error:
        raise click.ClickException(f"cannot reach {where}: {error}") from error
    console = Console()
    console.print(render_summary(result, where, time.perf_counter() - started))
    if not result["created"] and (result["seed"], result["customers"]) != (seed, customers):
        console.print(
            f"It was set up with seed {result['seed']} and {result['customers']:,} customers; "
            f"add --reset to recreate it with seed {seed} and {customers:,}."
        )


if __name__ == "__main__":
    main()
