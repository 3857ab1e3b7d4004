"""Incident 2: customers got the campaign email more than once.

This is the campaign worker as production runs it tonight, and the deployment settings it runs
with. Support is forwarding complaints: "why did you email me three times?". Read it as you
would during the incident; the dashboard shows what it does under load.

The fix is at the bottom of the file, below the spoiler line.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import replace

from harness import Job, send_email
from harness.world.faults import FaultPlan, Latency, ServiceFaults

from . import workflow
from .incident import Deployment, Incident, solution_of
from .workflow import create_campaign_jobs

# --- what production runs ---------------------------------------------------------------------

# The claim is healthy here: one atomic statement (scenarios/workflow.py).
claim_next_job = workflow.claim_next_job


async def send_email_step(job: Job) -> None:
    """Send the campaign email and record its message id.

    Every request carries an Idempotency-Key, as SendGrid recommends, so a request that the
    network retries is never processed twice.
    """

    async def one_request() -> str:
        return await send_email(
            job.email, workflow.email_body(job), idempotency_key=str(uuid.uuid4())
        )

    await workflow.send_and_record(job, one_request)


async def process_job(job: Job) -> None:
    await workflow.run_current_step(job, send=send_email_step)


def production_apis(seed: int) -> FaultPlan:
    """SendGrid usually answers in 150 ms, but its slowest calls take seconds, and now and then
    a response is lost after the email went out (a timeout that did deliver)."""
    sendgrid = ServiceFaults(
        timeout_after=0.01, timeout_seconds=0.5, latency=Latency(median=0.15, p99=1.5)
    )
    fast = ServiceFaults(latency=Latency(median=0.03, p99=0.15))
    return FaultPlan(seed=seed, sendgrid=sendgrid, sentiment=fast, crm=fast)


#: "A job takes about half a second end to end, so a half-second lease recovers a dead worker's
#: job fast. Heartbeats cost a write per job every few hundred ms: we turned them off."
DEPLOYMENT = Deployment(lease=0.5, heartbeat=False, apis=production_apis, stop_grace=2.0)


# --- spoiler: the fix ---------------------------------------------------------------------
# The idempotency key names the email, not the request: one key per job and step, the same on
# every retry and on every worker. A second worker that gets the job (its lease ran out while the
# first was still waiting on SendGrid) then gets the first email's message id back instead of
# sending another. Separately, renew the claim while working (heartbeat) or make the lease longer
# than the slowest job, so that live jobs are not handed out twice at all.

#: The rest of the fix is in the deployment: heartbeats on (a renewal every lease / 3), and a
#: lease that a renewal always beats.
FIXED_DEPLOYMENT = replace(DEPLOYMENT, lease=2.0, heartbeat=True)


# The email step of scenarios/workflow.py: a key stable across retries, no transaction open.
fixed_send_email_step = workflow.send_email_step


async def fixed_process_job(job: Job) -> None:
    await workflow.run_current_step(job, send=fixed_send_email_step)


_module = sys.modules[__name__]

INCIDENT = Incident(
    number=2,
    slug="duplicate_emails",
    title="Customers got the email more than once",
    page=(
        "Support is flooded: customers of the spring campaign say they received the same email "
        "more than once, and a few are threatening to report us as spam. The workers look "
        "healthy and the queue is moving."
    ),
    module=_module,
    deployment=DEPLOYMENT,
    fixed_deployment=FIXED_DEPLOYMENT,
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
