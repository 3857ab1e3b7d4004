"""The end-to-end judge excuses what no solution can avoid, and nothing more: an early retry by a
second worker (or by the told worker, restarted after it crashed) is the harness's doing only when
its lease recovery handed the job over after the 429 was given."""

from __future__ import annotations

import pytest

from harness.exceptions import RateLimitError, WorkerCrashed
from harness.grading.invariants import check_invariants
from harness.scope import acting_as
from harness.sql.database import Database
from harness.sql.models import Campaign, Job
from harness.world.crashes import CrashPlan, CrashPoint, use_crash_plan
from harness.world.faults import FaultPlan, RateLimit, Succeed
from harness.world.services import Services, send_email, use_services

EMAIL = "ada@example.com"


async def _retry_early(
    recovered_by: str | None, retried_by: str, *, crashed: bool = False
) -> list[str]:
    services = Services(
        FaultPlan(script={("sendgrid", EMAIL): (RateLimit(retry_after=30.0), Succeed())})
    )
    # A crash right before the worker's next database write: after it has been told to wait.
    plan = CrashPlan(points=[CrashPoint.before_write(1)] if crashed else [])
    campaign = await Campaign.create(name="Spring launch")
    job = await Job.create(campaign_id=campaign.id, email=EMAIL)
    key = f"job-{job.id}-send_email"
    with use_services(services), use_crash_plan(plan):
        with acting_as("worker-1", job.id), pytest.raises(RateLimitError):
            await send_email(EMAIL, "hello", key)
        if crashed:
            with acting_as("worker-1", job.id), pytest.raises(WorkerCrashed):
                await Job.filter(id=job.id).update(last_error="rate limited")
        if recovered_by is not None:
            services.ledger.record_recovery(job.id, recovered_by)
        with acting_as(retried_by, job.id):
            await send_email(EMAIL, "hello", key)
    problems = await check_invariants(services, plan, jobs=[job], drained=False)
    return [p for p in problems if "retry_after" in p]


async def test_a_second_worker_handed_the_job_by_a_lease_recovery_is_excused(
    database: Database,
) -> None:
    assert await _retry_early(recovered_by="worker-1", retried_by="worker-2") == []


async def test_a_second_worker_without_a_lease_recovery_is_not_excused(database: Database) -> None:
    assert len(await _retry_early(recovered_by=None, retried_by="worker-2")) == 1


async def test_the_worker_told_to_wait_is_never_excused(database: Database) -> None:
    assert len(await _retry_early(recovered_by="worker-1", retried_by="worker-1")) == 1


async def test_the_told_worker_restarted_after_a_crash_and_handed_the_job_again_is_excused(
    database: Database,
) -> None:
    # The runner restarts a crashed worker under its own name: the process that was told to wait
    # is gone, and the lease recovery gave the job to its successor.
    problems = await _retry_early(recovered_by="worker-1", retried_by="worker-1", crashed=True)
    assert problems == []


async def test_a_crash_without_a_lease_recovery_excuses_nothing(database: Database) -> None:
    assert len(await _retry_early(recovered_by=None, retried_by="worker-1", crashed=True)) == 1
