"""Diagnoses that say what happened, once, and blame the right thing: a call inside a transaction,
a stale save over a correct claim, and a per-row loop's measured statements per row.

The gradings run ``pytest`` in a subprocess with ``--kata-json``, as a candidate's would, on each
backend; the end-to-end judge is also asked directly about transitions written by hand.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from conftest import BACKENDS, POSTGRES_URL, graded_json
from harness.devtools.selftest import CATALOGUE_DIR, run_grader
from harness.grading.invariants import check_invariants
from harness.sql.database import Database
from harness.sql.models import Campaign, Job, JobStatus, Step
from harness.world.services import Services


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/kata.db" if request.param == "sqlite" else POSTGRES_URL


def graded_test(solution: Path, url: str, task: str, test: str, tmp_path: Path) -> dict[str, Any]:
    """The JSON outcome of one grading test (``-k test``) of ``task`` on ``url``."""
    report = graded_json(
        f"--solution={solution}", f"--db={url}", f"--kata-task={task}", "-k", test,
        tmp_path=tmp_path,
    )  # fmt: skip
    [outcome] = [t for t in report["tests"] if t["name"].startswith(test)]
    return outcome


# -- an API call inside a transaction ------------------------------------------------------------


def test_a_call_inside_a_transaction_is_told_once_with_the_call_the_transaction_and_the_fix(
    url: str,
) -> None:
    results = run_grader(
        CATALOGUE_DIR / "c_call_inside_transaction.py", url, tasks="C", first_failure=True
    )
    diagnosis = results["tasks"]["C"]["diagnosis"]
    assert diagnosis.startswith(
        "send_email to ada@example.com was called by worker-1 on job 1 while it held a database "
        "transaction (the one it opened "
    ), diagnosis
    assert "c_call_inside_transaction.py:" in diagnosis  # which line made the call
    assert "in send_email_step()" in diagnosis
    assert "a rollback cannot undo the call" in diagnosis  # why
    assert "call the API outside `transaction()`" in diagnosis  # what to do
    # Said once: no second sentence repeating that an API was called inside a transaction.
    assert diagnosis.count("transaction (") == 1
    assert "an external API was called" not in diagnosis
    assert diagnosis.count("held for the whole network") == 1


# -- a stale save over a correct claim -----------------------------------------------------------


def test_a_stale_save_over_a_new_claim_is_blamed_on_the_save_not_the_claim(
    url: str, tmp_path: Path
) -> None:
    outcome = graded_test(
        CATALOGUE_DIR / "d_no_refresh_stale_job.py",
        url,
        "D",
        "test_a_worker_whose_claim_was_taken_over_is_noted_when_it_still_writes",
        tmp_path,
    )
    message = outcome["message"]
    assert "worker-1 saved a stale copy of job 1 (ada@example.com) over worker-2's claim" in (
        message
    )
    assert "(a correct claim)" in message
    assert "saving the whole job object (job.save())" in message
    assert "re-read the job" in message
    assert "a claim must only take a pending job" not in message


async def _job_held_by(worker: str) -> Job:
    campaign = await Campaign.create(name="Spring launch")
    job = await Job.create(campaign_id=campaign.id, email="ada@example.com")
    await Job.filter(id=job.id).update(status=JobStatus.RUNNING, worker_id=worker)
    return job


async def test_the_judge_blames_a_save_under_a_former_holders_id_on_the_stale_save(
    database: Database,
) -> None:
    job = await _job_held_by("worker-1")
    await Job.filter(id=job.id).update(status=JobStatus.PENDING)  # the lease took it back
    await Job.filter(id=job.id).update(status=JobStatus.RUNNING, worker_id="worker-2")
    await Job.filter(id=job.id).update(step=Step.ANALYZE, worker_id="worker-1")
    [problem] = await check_invariants(Services(), jobs=[job], drained=False)
    assert problem.startswith(
        "worker-1 saved a stale copy of job 1 (ada@example.com) over worker-2's claim"
    ), problem
    assert "a claim must only take a pending job" not in problem


async def test_the_judge_blames_a_change_under_a_worker_that_never_held_the_job_on_the_claim(
    database: Database,
) -> None:
    job = await _job_held_by("worker-1")
    await Job.filter(id=job.id).update(step=Step.ANALYZE, worker_id="worker-2")
    [problem] = await check_invariants(Services(), jobs=[job], drained=False)
    assert "two workers held it at once, worker-2 having taken a job that was not pending" in (
        problem
    )
    assert "stale" not in problem


# -- statements per row, as measured ---------------------------------------------------------------


def test_a_select_then_insert_per_row_is_told_as_about_two_statements_per_row(url: str) -> None:
    results = run_grader(
        CATALOGUE_DIR / "b_select_then_insert_per_row.py",
        url,
        tasks="B",
        tier="fast",
        first_failure=True,
    )
    diagnosis = results["tasks"]["B"]["diagnosis"]
    assert "about 2 statements per row" in diagnosis, diagnosis
    assert "one statement per row" not in diagnosis


def test_one_insert_per_row_is_still_told_as_about_one_statement_per_row(url: str) -> None:
    results = run_grader(
        CATALOGUE_DIR / "b_per_row_inserts.py", url, tasks="B", tier="fast", first_failure=True
    )
    assert "about one statement per row" in results["tasks"]["B"]["diagnosis"]
