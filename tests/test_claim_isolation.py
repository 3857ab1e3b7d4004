"""A claim that only SQLite's whole-database lock makes safe is warned about, from its statements;
claims that lock the row, re-check the status or use no transaction are left alone.

The gradings run ``pytest`` in a subprocess with ``--kata-json``, as a candidate's would, on each
backend (only the claim-race test, the one that carries the warning).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from conftest import POSTGRES_URL, graded_json
from harness import Job, JobStatus, execute_sql, transaction, utcnow
from harness.devtools.selftest import ALTERNATIVE_PATH, CATALOGUE_DIR, REQUEUE_ORM_PATH
from harness.grading.claim_isolation import LockReliance
from harness.scope import acting_as
from harness.sql.database import Database
from harness.sql.models import Campaign
from harness.worker.solutions import REFERENCE_PATH

_PENDING = "SELECT id FROM jobs WHERE status = 'pending' AND run_after <= ? ORDER BY id LIMIT 1"


async def _read_then_update_by_id() -> None:
    async with transaction():
        [row] = await execute_sql(_PENDING, [utcnow()])
        await Job.filter(id=row["id"]).update(status=JobStatus.RUNNING, worker_id="worker-1")


async def _read_then_compare_and_set() -> None:
    async with transaction():
        [row] = await execute_sql(_PENDING, [utcnow()])
        await Job.filter(id=row["id"], status=JobStatus.PENDING).update(
            status=JobStatus.RUNNING, worker_id="worker-1"
        )


async def _read_then_update_without_a_transaction() -> None:
    [row] = await execute_sql(_PENDING, [utcnow()])
    await Job.filter(id=row["id"]).update(status=JobStatus.RUNNING, worker_id="worker-1")


async def _watched(database: Database, claim: Callable[[], Awaitable[None]]) -> LockReliance:
    campaign = await Campaign.create(name="Spring launch")
    await Job.create(campaign_id=campaign.id, email="ada@example.com")
    watch = LockReliance(database, worker="worker-1")
    with watch.installed(), acting_as("worker-1"):
        await claim()
    return watch


async def test_a_read_then_update_by_id_inside_a_transaction_relies_on_the_lock(
    database: Database,
) -> None:
    watch = await _watched(database, _read_then_update_by_id)
    assert watch.evidence is not None
    assert watch.evidence.read_sql == _PENDING
    assert watch.evidence.update_sql.startswith("UPDATE jobs SET")
    warning = watch.warning()
    assert "safe only because SQLite locks the whole database" in warning
    assert "two workers read the same pending job and both claim it" in warning
    assert "FOR UPDATE SKIP LOCKED" in warning
    assert "WHERE id = ? AND status = 'pending' RETURNING *" in warning


async def test_an_update_that_rechecks_the_status_does_not_rely_on_the_lock(
    database: Database,
) -> None:
    assert (await _watched(database, _read_then_compare_and_set)).evidence is None


async def test_statements_outside_a_transaction_do_not_rely_on_the_lock(
    database: Database,
) -> None:
    # Racy on both backends, and the claim race says so: no lock hides it.
    assert (await _watched(database, _read_then_update_without_a_transaction)).evidence is None


# -- through the grader --------------------------------------------------------------------------


def _task_a(solution: Path, backend: str, tmp_path: Path) -> dict[str, Any]:
    url = f"sqlite:///{tmp_path}/kata.db" if backend == "sqlite" else POSTGRES_URL
    report = graded_json(
        f"--solution={solution}", f"--db={url}", "--kata-task=A",
        "-k", "test_a_claim_rechecks_the_job_it_read_before_taking_it", tmp_path=tmp_path,
    )  # fmt: skip
    task: dict[str, Any] = report["tasks"]["A"]
    return task


def test_a_claim_only_sqlites_lock_makes_safe_passes_there_with_a_warning(
    backend: str, tmp_path: Path
) -> None:
    task = _task_a(CATALOGUE_DIR / "a_transaction_without_row_lock.py", backend, tmp_path)
    # PostgreSQL shows the double claim itself; SQLite cannot, so it warns.
    assert task["status"] == ("passing" if backend == "sqlite" else "failing"), task
    [warning] = task["warnings"]
    assert "safe only because SQLite locks the whole database" in warning
    assert "FOR UPDATE SKIP LOCKED" in warning


@pytest.mark.parametrize(
    "solution", [REFERENCE_PATH, ALTERNATIVE_PATH, REQUEUE_ORM_PATH], ids=lambda p: p.stem
)
def test_a_correct_claim_gets_no_warning(solution: Path, backend: str, tmp_path: Path) -> None:
    task = _task_a(solution, backend, tmp_path)
    assert task["status"] == "passing", task
    assert task["warnings"] == []
