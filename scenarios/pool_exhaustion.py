"""Incident 3: PoolTimeout errors and latency spikes as the campaign launches.

This is the campaign worker as production runs it tonight, and its database settings. Every
campaign launch queues thousands of jobs at once; since this morning's release the launch burst
brings PoolTimeout errors and p99 latency alerts. Read it as you would during the incident; the
dashboard shows what it does under load.

The fix is at the bottom of the file, below the spoiler line.
"""

from __future__ import annotations

import sys

from harness import (
    Job,
    Step,
    db,
    execute_sql,
    send_email,
    transaction,
)
from harness.world.faults import FaultPlan, Latency, ServiceFaults

from . import workflow
from .incident import Deployment, Incident, solution_of
from .workflow import create_campaign_jobs

# --- what production runs ---------------------------------------------------------------------

# The claim is healthy here: one atomic statement (scenarios/workflow.py).
claim_next_job = workflow.claim_next_job


async def send_email_step(job: Job) -> None:
    """Send the campaign email exactly once (this morning's release).

    Check, send and record now happen in one transaction with the job's row locked: a second
    worker can't slip in between the check and the record, and if anything fails the whole
    step rolls back as if it never started.
    """
    lock = " FOR UPDATE" if db.dialect == "postgresql" else ""
    key = workflow.step_key(job, Step.SEND_EMAIL)
    async with transaction():
        rows = await execute_sql(f"SELECT message_id FROM jobs WHERE id = ?{lock}", [job.id])
        if rows and rows[0]["message_id"] is not None:
            job.message_id = rows[0]["message_id"]
            return
        await workflow.send_and_record(
            job, lambda: send_email(job.email, workflow.email_body(job), idempotency_key=key)
        )


async def process_job(job: Job) -> None:
    await workflow.run_current_step(job, send=send_email_step)


def production_apis(seed: int) -> FaultPlan:
    """SendGrid answers in ~200 ms with a slow tail; during a launch burst it throttles us, and
    almost a third of its answers are 429s asking for one or two seconds of patience. The
    sentiment API and the CRM answer in ~30 ms."""
    sendgrid = ServiceFaults(
        rate_limit=0.3, retry_after=(1.0, 2.0), latency=Latency(median=0.2, p99=1.5)
    )
    fast = ServiceFaults(latency=Latency(median=0.03, p99=0.15))
    return FaultPlan(seed=seed, sendgrid=sendgrid, sentiment=fast, crm=fast)


#: "Ten connections for twenty workers is plenty: a statement takes a millisecond or two. And
#: fail fast: a request that waits more than a second for a connection is an error" (on SQLite,
#: more than two seconds for the write lock).
DEPLOYMENT = Deployment(
    pool_size=lambda workers: max(1, workers // 2),
    pool_timeout=1.0,
    busy_timeout=2.0,
    apis=production_apis,
    stop_grace=2.0,
)


# --- spoiler: the fix ---------------------------------------------------------------------
# Never hold a transaction (and so a pooled connection, and on SQLite the write lock) across a
# network call. Send outside any transaction with the stable idempotency key - that key, not a
# row lock, is what makes "exactly once" true - then record the message id in one short UPDATE.
# A bigger pool only moves the problem: every connection would still sit idle during the send.


# The email step of scenarios/workflow.py: a key stable across retries, no transaction open.
fixed_send_email_step = workflow.send_email_step


async def fixed_process_job(job: Job) -> None:
    await workflow.run_current_step(job, send=fixed_send_email_step)


_module = sys.modules[__name__]

INCIDENT = Incident(
    number=3,
    slug="pool_exhaustion",
    title="PoolTimeout errors and p99 spikes under the launch burst",
    page=(
        "Every campaign launch now pages us: PoolTimeout errors in the worker logs, and the p99 "
        "latency alert on claiming a job (claim_next_job) fires. It started with this morning's "
        "release, which made the email step 'exactly once'. Between launches everything is "
        "quiet."
    ),
    pages={
        "sqlite": (
            "Every campaign launch now pages us: PoolTimeout and 'database is locked' errors in "
            "the worker logs, and the p99 latency alert on claiming a job (claim_next_job) "
            "fires. It started with this morning's release, which made the email step 'exactly "
            "once'. Between launches everything is quiet."
        ),
    },
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
        claim_next_job=claim_next_job,
        create_campaign_jobs=create_campaign_jobs,
        send_email_step=fixed_send_email_step,
        process_job=fixed_process_job,
    ),
)
