"""Incident 1: the spring campaign is crawling.

This is the campaign worker as production runs it tonight: 5,000 customers queued, 20 workers,
and the campaign will take hours instead of minutes. Read it as you would read the service's
code during the incident; the dashboard shows what it does under load.

The fix is at the bottom of the file, below the spoiler line.
"""

from __future__ import annotations

import sys

from harness import (
    Job,
    JobStatus,
    db,
    execute_sql,
    transaction,
    utcnow,
)
from harness.world.faults import FaultPlan, Latency, ServiceFaults

from . import workflow
from .incident import Deployment, Incident, solution_of
from .workflow import create_campaign_jobs

# --- what production runs ---------------------------------------------------------------------

_OLDEST_PENDING = """
SELECT * FROM jobs
 WHERE status = 'pending' AND run_after <= ?
 ORDER BY run_after, id
 LIMIT 1{lock}
"""

_MARK_RUNNING = """
UPDATE jobs
   SET status = 'running', worker_id = ?, claimed_at = ?, updated_at = ?
 WHERE id = ?
"""


async def claim_next_job(worker_id: str) -> Job | None:
    """Take the oldest pending job, and send its email before anyone else can touch it.

    Claim and send are one transaction: the row is locked until we commit, so two workers can
    never email the same customer, and if the send blows up the transaction rolls back and the
    job simply stays pending for the next worker.
    """
    now = utcnow()
    lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
    async with transaction():
        rows = await execute_sql(_OLDEST_PENDING.format(lock=lock), [now])
        if not rows:
            return None
        job = Job.from_row(rows[0])
        await send_email_step(job)
        if job.status == JobStatus.FAILED:
            return job
        await execute_sql(_MARK_RUNNING, [worker_id, now, utcnow(), job.id])
    job.status, job.worker_id, job.claimed_at = JobStatus.RUNNING, worker_id, now
    return job


# The email step is healthy here (scenarios/workflow.py): a key stable across retries.
send_email_step = workflow.send_email_step


async def process_job(job: Job) -> None:
    """Run the job's current step (the email usually went out with the claim), then advance."""
    await workflow.run_current_step(job, send=send_email_step)


def production_apis(seed: int) -> FaultPlan:
    """SendGrid answers in ~120 ms; the sentiment API and the CRM in ~40 ms; a few 429s."""
    sendgrid = ServiceFaults(rate_limit=0.005, latency=Latency(median=0.12, p99=0.5))
    fast = ServiceFaults(latency=Latency(median=0.04, p99=0.2))
    return FaultPlan(seed=seed, sendgrid=sendgrid, sentiment=fast, crm=fast)


DEPLOYMENT = Deployment(lease=2.0, heartbeat=True, pool_timeout=30.0, apis=production_apis)


# --- spoiler: the fix ---------------------------------------------------------------------
# Claim in one short statement that locks nothing for longer than itself: pick and mark in the
# same UPDATE, and on PostgreSQL let concurrent claimers skip the rows others are claiming (FOR
# UPDATE SKIP LOCKED) instead of queueing behind them. The email is sent by process_job, with no
# transaction open; its stable idempotency key is what makes "never email twice" true, not a lock.

# The claim of scenarios/workflow.py: one atomic UPDATE ... RETURNING statement.
fixed_claim_next_job = workflow.claim_next_job


async def fixed_process_job(job: Job) -> None:
    await workflow.run_current_step(job, send=send_email_step)


_module = sys.modules[__name__]

INCIDENT = Incident(
    number=1,
    slug="slow_throughput",
    title="The campaign is crawling",
    page=(
        "Marketing launched the spring campaign twenty minutes ago. The twenty campaign "
        "workers are all up and healthy, yet the campaign is nowhere near done: the queue "
        "barely moves, at a fraction of what twenty workers should do. Nothing was deployed "
        "today."
    ),
    module=_module,
    deployment=DEPLOYMENT,
    flawed=solution_of(
        _module,
        claim_next_job=claim_next_job,
        create_campaign_jobs=create_campaign_jobs,
        send_email_step=send_email_step,
        process_job=process_job,
    ),
    fixed=solution_of(
        _module,
        claim_next_job=fixed_claim_next_job,
        create_campaign_jobs=create_campaign_jobs,
        send_email_step=send_email_step,
        process_job=fixed_process_job,
    ),
    needs_baseline=True,
)
