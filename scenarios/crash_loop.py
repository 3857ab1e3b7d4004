"""Incident 4: the workers keep dying, and the queue slows down in waves.

This is the campaign worker as production runs it tonight, and how its queue takes a dead
worker's job back: the reaper, which the runner's monitor runs every 50 ms. Since the campaign
started, Kubernetes keeps restarting worker pods. Read it as you would during the incident; the
dashboard shows what it does under load.

The fix is at the bottom of the file, below the spoiler line.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from harness import Job
from harness.world.faults import FaultPlan, Latency, ServiceFaults

from . import workflow
from .incident import Deployment, Incident, Load, Poison, solution_of
from .workflow import create_campaign_jobs

# --- what production runs ---------------------------------------------------------------------

# The claim and the email step are healthy here: one atomic statement to claim, a key stable
# across retries to send (scenarios/workflow.py).
claim_next_job = workflow.claim_next_job
send_email_step = workflow.send_email_step


async def process_job(job: Job) -> None:
    """The job's current step: send the email; read the customer's reply and have its
    sentiment analyzed (analyze); route the customer in the CRM (take_action)."""
    await workflow.run_current_step(job, send=send_email_step)


# The reaper, which the runner's monitor runs every 50 ms (RECOVER_EXPIRED, harness/sql/queue.py):
#
#     UPDATE jobs SET status = 'pending'
#      WHERE status = 'running' AND COALESCE(claimed_at, updated_at) < <now - lease>
#     RETURNING id, worker_id
#
# A running job whose claim was not renewed within the lease belonged to a worker that died (a
# live worker renews its claim every lease / 3): back to the queue it goes, for the next worker.


def production_apis(seed: int) -> FaultPlan:
    """SendGrid answers in ~100 ms; the sentiment API and the CRM in ~30 ms; no faults."""
    sendgrid = ServiceFaults(latency=Latency(median=0.1, p99=0.3))
    fast = ServiceFaults(latency=Latency(median=0.03, p99=0.12))
    return FaultPlan(seed=seed, sendgrid=sendgrid, sentiment=fast, crm=fast)


#: "A dead worker's job is back in the queue within half a second: live workers renew their
#: claim every 170 ms. A worker pod that dies is restarted by Kubernetes, after its back-off:
#: 10 s, then 20, 40, ... up to 5 minutes while it keeps crashing."
DEPLOYMENT = Deployment(
    lease=0.5, heartbeat=True, restart=10.0, apis=production_apis, stop_grace=2.0
)

# --- spoiler: the fix ---------------------------------------------------------------------
# Some job will always kill whoever runs it: a reply no parser survives, a customer record that
# overflows something. The queue must not hand it out forever. Count each time a job's claim
# expires (its worker died) in `attempts`, and fail the job with `last_error` once its workers
# have died MAX_ATTEMPTS times: a dead-letter an operator can look at (and alert on), instead of
# a crash loop. The parser's own bug is worth a ticket too, but no fix of it makes the queue safe
# from the next poison job.


# The reaper that counts (RECOVER_COUNTING, harness/sql/queue.py), the monitor's once the fix is
# deployed (count_recoveries):
#
#     UPDATE jobs
#        SET status = CASE WHEN attempts + 1 >= <MAX_ATTEMPTS> THEN 'failed' ELSE 'pending' END,
#            last_error = CASE WHEN attempts + 1 >= <MAX_ATTEMPTS> THEN <why> ELSE last_error END,
#            attempts = attempts + 1
#      WHERE status = 'running' AND COALESCE(claimed_at, updated_at) < <now - lease>
#     RETURNING id, worker_id, status

#: The fix is the deployment's: the monitor's recovery counts (the workers' code is unchanged).
FIXED_DEPLOYMENT = replace(DEPLOYMENT, count_recoveries=True)


#: One customer's reply (a forwarded mailbox, 40 MB of nested MIME parts) kills the native mail
#: parser the analyze step's client library uses, and with it the worker's process, every time.
#: Nobody knows that yet: the pods' logs end with the segfault, and nothing says which job.
POISON = Poison(
    address="dana.whitfield@example.com",
    position=3,
    last_words="Segmentation fault (core dumped) in libmimeparse",
)

_module = sys.modules[__name__]
_production = solution_of(
    _module,
    claim_next_job=claim_next_job,
    create_campaign_jobs=create_campaign_jobs,
    send_email_step=send_email_step,
    process_job=process_job,
)

INCIDENT = Incident(
    number=4,
    slug="crash_loop",
    title="Workers keep dying, throughput falls in waves",
    page=(
        "Since the campaign started, Kubernetes keeps restarting our worker pods "
        "(CrashLoopBackOff): a different worker every second or so, each log ending with "
        "'Segmentation fault (core dumped)'. The queue's throughput falls in waves and keeps "
        "falling. Nothing was deployed today, and the database and the APIs look healthy."
    ),
    module=_module,
    deployment=DEPLOYMENT,
    fixed_deployment=FIXED_DEPLOYMENT,
    flawed=_production,
    fixed=_production,
    poison=POISON,
    solution_reaps=True,
    # Six lease periods and more: a job must have killed more workers than MAX_ATTEMPTS (5)
    # before a run tells a reaper that gives up from one that never does.
    quick=Load(jobs=400, workers=20, duration=5.0),
)
