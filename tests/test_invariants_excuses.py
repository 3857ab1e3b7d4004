"""The end-to-end judge excuses what no solution can avoid, and nothing more: an early retry by a
second worker is the harness's doing only when its lease recovery handed that worker the job
after the 429 was given."""

from __future__ import annotations

import pytest

from harness.context import acting_as
from harness.database import Database
from harness.exceptions import RateLimitError
from harness.faults import FaultPlan, RateLimit, Succeed
from harness.grading.invariants import check_invariants
from harness.models import Campaign, Job
from harness.services import Services, send_email, use_services

EMAIL = "ada@example.com"


async def _retry_early(recovered_by: str | None, retried_by: str) -> list[str]:
    services = Services(
        FaultPlan(script={("sendgrid", EMAIL): (RateLimit(retry_after=30.0), Succeed())})
    )
    campaign = await Campaign.create(name="Spring launch")
    job = await Job.create(campaign_id=campaign.id, email=EMAIL)
    key = f"job-{job.id}-send_email"
    with use_services(services):
        with acting_as("worker-1", job.id), pytest.raises(RateLimitError):
            await send_email(EMAIL, "hello", key)
        if recovered_by is not None:
            services.ledger.record_recovery(job.id, recovered_by)
        with acting_as(retried_by, job.id):
            await send_email(EMAIL, "hello", key)
    problems = await check_invariants(services, jobs=[job], drained=False)
    return [p for p in problems if "retry_after" in p]


async def test_a_second_worker_handed_the_job_by_a_lease_recovery_is_excused(
    database: Database,
) -> None:
    assert await _retry_early(recovered_by="worker-1", retried_by="worker-2") == []


async def test_a_second_worker_without_a_lease_recovery_is_not_excused(database: Database) -> None:
    assert len(await _retry_early(recovered_by=None, retried_by="worker-2")) == 1


async def test_the_worker_told_to_wait_is_never_excused(database: Database) -> None:
    assert len(await _retry_early(recovered_by="worker-1", retried_by="worker-1")) == 1
