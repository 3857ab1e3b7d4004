"""``setup_db.py``: sample data in every job state, made once, dropped only when it is ours."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from click.testing import CliRunner

import setup_db
from conftest import base_config
from harness.sql.config import DatabaseConfig
from harness.sql.database import execute_sql, open_database
from harness.sql.isolation import isolated_config
from harness.sql.models import MAX_ATTEMPTS, Customer, Job, JobStatus, Step
from harness.sql.orm import utcnow
from harness.sql.schema import create_schema
from harness.world.services import invalid_email_reason

setup = setup_db.setup

CUSTOMERS = 300


@pytest.fixture
async def config(backend: str) -> AsyncIterator[DatabaseConfig]:
    async with isolated_config(base_config(backend), "setup", confined=False) as config:
        yield config


async def _emails(config: DatabaseConfig) -> list[str]:
    async with open_database(config):
        return [
            row["email"] for row in await execute_sql("SELECT email FROM customers ORDER BY id")
        ]


async def test_setup_creates_campaigns_customers_and_jobs_in_every_state(
    config: DatabaseConfig,
) -> None:
    result = await setup(config, customers=CUSTOMERS)

    assert result["created"] is True
    assert result["tables"]["campaigns"] == 3
    assert result["tables"]["customers"] == CUSTOMERS
    assert result["tables"]["kata_meta"] == 2
    assert set(result["jobs_by_status"]) == {status.value for status in JobStatus}
    assert all(n > 0 for n in result["jobs_by_status"].values()), result["jobs_by_status"]
    assert sum(result["jobs_by_status"].values()) == result["tables"]["jobs"]

    async with open_database(config):
        customers = await Customer.all().order_by("id").all()
        jobs = await Job.all().order_by("id").all()
        marker = await execute_sql("SELECT value FROM kata_meta WHERE key = 'created_by'")
    assert marker == [{"value": "campaign-jobs-kata setup_db.py"}]
    assert len({c.email for c in customers}) == CUSTOMERS
    assert all(c.name.strip() for c in customers)
    assert {job.campaign_id for job in jobs} == {1}

    rejected = [c.email for c in customers if invalid_email_reason(c.email)]
    assert len(rejected) == result["undeliverable_customers"]
    assert 3 <= len(rejected) <= CUSTOMERS * 0.02
    assert any(email.endswith(".invalid") for email in rejected)
    assert any(not email.endswith(".invalid") for email in rejected)  # syntactically broken

    now = utcnow()
    by_status = {s: [job for job in jobs if job.status is s] for s in JobStatus}
    assert any(job.run_after > now for job in by_status[JobStatus.PENDING])
    assert any(job.run_after <= now for job in by_status[JobStatus.PENDING])
    assert all(j.worker_id and j.claimed_at for j in by_status[JobStatus.RUNNING])
    for job in by_status[JobStatus.COMPLETED]:
        assert job.step is Step.DONE
        assert job.message_id and job.sentiment and job.action_id
    for job in by_status[JobStatus.FAILED]:
        assert job.last_error
        assert job.attempts == (1 if invalid_email_reason(job.email) else MAX_ATTEMPTS)
    assert any("InvalidEmailError" in (job.last_error or "") for job in by_status[JobStatus.FAILED])


async def test_running_setup_again_changes_nothing(config: DatabaseConfig) -> None:
    first = await setup(config, customers=CUSTOMERS)
    emails = await _emails(config)

    again = await setup(config, customers=CUSTOMERS)
    other_arguments = await setup(config, customers=CUSTOMERS * 2, seed=1)

    for result in (again, other_arguments):
        assert result["created"] is False
        assert result == {**first, "created": False}
    assert await _emails(config) == emails


async def test_reset_drops_what_setup_made_and_recreates_it(config: DatabaseConfig) -> None:
    await setup(config, customers=CUSTOMERS, seed=1)
    before = await _emails(config)
    async with open_database(config):
        await execute_sql("INSERT INTO campaigns (name) VALUES ('added by hand')")

    result = await setup(config, reset=True, customers=CUSTOMERS + 50, seed=2)

    assert result["created"] is True
    assert result["seed"] == 2
    assert result["tables"]["campaigns"] == 3
    assert result["tables"]["customers"] == CUSTOMERS + 50
    after = await _emails(config)
    assert after != before
    async with open_database(config):
        assert await Job.filter(campaign_id=1).count() == result["tables"]["jobs"]


@pytest.mark.parametrize("reset", [True, False], ids=["reset", "no-reset"])
async def test_setup_refuses_tables_it_did_not_create(config: DatabaseConfig, reset: bool) -> None:
    async with open_database(config) as database:
        await create_schema(database)
        await execute_sql("INSERT INTO campaigns (name) VALUES ('somebody else''s')")

    with pytest.raises(setup_db.SetupRefused) as refused:
        await setup(config, reset=reset, customers=CUSTOMERS)

    found = (
        f"schema {config.schema} exists but was"
        if config.dialect == "postgresql"
        else f"{config.sqlite_path} has the kata's tables but they were"
    )
    it = "it" if config.dialect == "postgresql" else "them"
    action = f"drop {it}" if reset else f"write sample data into {it}"
    assert str(refused.value) == f"{found} not created by setup_db.py; refusing to {action}"

    async with open_database(config):
        rows = await execute_sql("SELECT name FROM campaigns")
        assert rows == [{"name": "somebody else's"}]
        assert await execute_sql("SELECT * FROM kata_meta") == []


async def test_the_same_seed_gives_the_same_customers(backend: str) -> None:
    emails = []
    for _ in range(2):
        async with isolated_config(base_config(backend), "setup", confined=False) as config:
            await setup(config, customers=CUSTOMERS, seed=7)
            emails.append(await _emails(config))
    assert emails[0] == emails[1]
    assert len(set(emails[0])) == CUSTOMERS


def test_generate_differs_with_the_seed() -> None:
    now = utcnow()
    first, second = (setup_db.generate(CUSTOMERS, seed, now) for seed in (1, 2))
    assert [c.email for c in first.customers] != [c.email for c in second.customers]


async def test_setup_on_postgresql_needs_a_schema_of_its_own() -> None:
    config = base_config("postgresql")
    with pytest.raises(ValueError, match=r"needs config\.schema"):
        await setup(config, customers=CUSTOMERS)
    with pytest.raises(ValueError, match="will not write into the schema 'public'"):
        await setup(config.with_options(schema="public"), customers=CUSTOMERS)


def test_command_creates_once_then_reports_already_set_up(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'cli.db'}"
    args = ["--database-url", url, "--customers", "200", "--seed", "3"]
    runner = CliRunner()

    created = runner.invoke(setup_db.main, args)
    again = runner.invoke(setup_db.main, args)

    assert created.exit_code == 0, created.output
    assert "SQLite cli.db" in created.output
    assert "created in" in created.output
    assert "200" in created.output and "completed" in created.output
    assert again.exit_code == 0, again.output
    assert "already set up" in again.output


def test_command_refuses_to_reset_tables_it_did_not_create(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'foreign.db'}"

    async def create_unmarked_tables() -> None:
        async with open_database(url, latency=0.0) as database:
            await create_schema(database)

    asyncio.run(create_unmarked_tables())
    result = CliRunner().invoke(setup_db.main, ["--database-url", url, "--reset"])

    assert result.exit_code == 1
    assert "were not created by setup_db.py; refusing to drop" in result.output
