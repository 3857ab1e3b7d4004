"""harness.worker.runner: workers drain a campaign; a crashed worker's job comes back after the
lease while a live worker's does not; a candidate's mistake (no progress, an exception, no
claims) is diagnosed and never hangs the run; the metrics agree with the database; and end to
end, under faults and crashes, the reference keeps every invariant of the contract."""

from __future__ import annotations

import asyncio
import os
import sys
import textwrap
from collections import Counter
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from harness.devtools.stress import check_end_to_end, drain_under_faults
from harness.sql.database import Database
from harness.sql.models import Campaign, Job, JobStatus, JobTransition, Step
from harness.worker.runner import Runner, RunnerConfig, RunReport, Stall
from harness.worker.solutions import REFERENCE_PATH, Solution, load_solution
from harness.world import World
from harness.world.campaigns import campaign_emails
from harness.world.crashes import CrashPlan, CrashPoint
from harness.world.services import Services

REFERENCE = load_solution(REFERENCE_PATH)

# Inline solutions take the reference's functions and replace the ones a test is about.
_PRELUDE = """\
from __future__ import annotations

import asyncio
import os
import sys

from harness import Job
from harness.exceptions import WorkerCrashed
from harness.worker.solutions import REFERENCE_PATH, load_solution

_reference = load_solution(REFERENCE_PATH)
claim_next_job = _reference.claim_next_job
create_campaign_jobs = _reference.create_campaign_jobs
send_email_step = _reference.send_email_step
process_job = _reference.process_job
"""


def inline_solution(tmp_path: Path, name: str, body: str) -> Solution:
    path = tmp_path / f"{name}.py"
    path.write_text(_PRELUDE + textwrap.dedent(body))
    return load_solution(path)


def line_of(solution: Solution, text: str) -> int:
    lines = solution.path.read_text().splitlines()
    return next(n for n, line in enumerate(lines, start=1) if text in line)


async def create_campaign(count: int, *, invalid: int = 0) -> list[int]:
    """A campaign of ``count`` pending jobs; their ids in order."""
    campaign = await Campaign.create(name="runner test")
    await REFERENCE.create_campaign_jobs(campaign.id, campaign_emails(count, invalid=invalid))
    return [job.id for job in await Job.filter(campaign_id=campaign.id).order_by("id")]


async def run(
    solution: Solution,
    database: Database,
    *,
    services: Services | None = None,
    crash_plan: CrashPlan | None = None,
    **config: Any,
) -> RunReport:
    runner = Runner(
        solution,
        RunnerConfig(**config),
        world=World(database, services or Services(), crash_plan=crash_plan),
    )
    return await runner.run()


async def history_of(job_id: int) -> list[JobTransition]:
    return await JobTransition.filter(job_id=job_id).order_by("id")


async def claims_of(job_id: int) -> list[JobTransition]:
    return [
        t
        for t in await history_of(job_id)
        if t.old_status is JobStatus.PENDING and t.new_status is JobStatus.RUNNING
    ]


async def counts_in_database() -> dict[str, int]:
    jobs = await Job.all()
    return {status.value: n for status in JobStatus if (n := sum(j.status is status for j in jobs))}


# -- draining ----------------------------------------------------------------------------------


async def test_the_reference_drains_a_campaign_without_faults(database: Database) -> None:
    ids = await create_campaign(60)
    services = Services()
    report = await run(REFERENCE, database, services=services, workers=8, deadline=30)

    assert report.ok, report.describe()
    assert (report.drained, report.deadline_hit, report.aborted) == (True, False, None)
    assert report.counts == {"completed": 60}
    ledger = services.ledger
    assert Counter(d.job_id for d in ledger.deliveries) == Counter(ids)  # one email per job
    assert Counter(a.job_id for a in ledger.actions) == Counter(ids)  # one CRM action per job
    assert ledger.violations == []
    assert (report.recovered, report.metrics.crashes) == ([], 0)
    assert await check_end_to_end(database, services) == []


# -- crashes and the lease ---------------------------------------------------------------------

LEASE = 0.5


@pytest.mark.parametrize("crash", ["after_effect", "before_write"])
async def test_a_crashed_workers_job_is_returned_after_the_lease_and_completes_once(
    database: Database, crash: str
) -> None:
    ids = await create_campaign(4)
    if crash == "after_effect":  # every job: right after its email went out
        plan, crashed = CrashPlan(points=[CrashPoint.after_effect("sendgrid")]), ids
    else:  # one job: right before it records its message id
        plan, crashed = CrashPlan(points=[CrashPoint.before_write(1, job_id=ids[1])]), [ids[1]]
    services = Services()
    report = await run(
        REFERENCE, database, services=services, crash_plan=plan, workers=2, lease=LEASE
    )

    assert report.ok, report.describe()
    assert report.counts == {"completed": 4}
    assert sorted(c.job_id for c in plan.crashes) == crashed
    assert report.metrics.crashes == len(crashed)
    # The runner took each crashed job back from the worker that died holding it.
    assert sorted(report.recovered) == sorted((c.job_id, c.caller) for c in plan.crashes)
    for crash_ in plan.crashes:
        claim, recovery, *rest = await history_of(crash_.job_id)
        # It stayed running, untouched, until its claim was older than the lease.
        assert (claim.old_status, claim.new_status, claim.worker_id) == (
            JobStatus.PENDING,
            JobStatus.RUNNING,
            crash_.caller,
        )
        assert (recovery.old_status, recovery.new_status, recovery.new_step) == (
            JobStatus.RUNNING,
            JobStatus.PENDING,
            Step.SEND_EMAIL,
        )
        assert recovery.at - claim.at >= timedelta(seconds=LEASE - 0.05)
        assert rest[0].new_status is JobStatus.RUNNING  # claimed again, then finished
        # The email went out once; processing it again replayed the idempotent send.
        sends = services.ledger.calls_for("sendgrid", operation="send_email")
        outcomes = [c.outcome for c in sends if c.job_id == crash_.job_id]
        assert outcomes == ["crashed" if crash == "after_effect" else "ok", "replayed"]
    assert services.ledger.duplicate_deliveries() == {}
    assert len(services.ledger.deliveries) == 4
    assert await check_end_to_end(database, services, plan) == []


SLOW_ONCE = f"""
slow_job = None


async def process_job(job: Job) -> None:
    global slow_job
    if slow_job is None:
        slow_job = job.id
        await asyncio.sleep({3 * LEASE})  # three leases
    await _reference.process_job(job)
"""


async def test_a_live_worker_keeps_its_job_while_it_renews_the_claim(
    database: Database, tmp_path: Path
) -> None:
    await create_campaign(3)
    solution = inline_solution(tmp_path, "slow_once", SLOW_ONCE)
    report = await run(solution, database, workers=2, lease=LEASE, heartbeat=True)

    assert report.ok, report.describe()
    assert report.counts == {"completed": 3}
    assert report.recovered == []
    assert len(await claims_of(solution.module.slow_job)) == 1


async def test_without_a_heartbeat_a_slow_job_is_handed_to_a_second_worker(
    database: Database, tmp_path: Path
) -> None:
    await create_campaign(3)
    solution = inline_solution(tmp_path, "slow_once", SLOW_ONCE)
    services = Services()
    report = await run(
        solution, database, services=services, workers=2, lease=LEASE, heartbeat=False
    )

    slow_job = solution.module.slow_job
    assert report.ok, report.describe()
    assert report.counts == {"completed": 3}
    [(recovered, first_worker)] = report.recovered
    assert recovered == slow_job
    claims = await claims_of(slow_job)
    assert claims[0].worker_id == first_worker
    assert len({c.worker_id for c in claims}) == 2  # the flaw scenario 2 is built on
    assert services.ledger.duplicate_deliveries() == {}  # the reference copes with it


LOST_CANCEL = """
heartbeat_renewing = asyncio.Event()
crashed = False


async def process_job(job: Job) -> None:
    global crashed
    if not crashed:
        crashed = True
        await heartbeat_renewing.wait()
        raise WorkerCrashed("killed while its heartbeat was renewing the claim")
    await _reference.process_job(job)
"""


async def test_a_crashed_workers_heartbeat_stops_even_when_its_cancellation_is_lost(
    database: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Regression: on Python 3.11 psycopg_pool's getconn (asyncio.wait_for) can swallow the
    cancel that stops a heartbeat; the heartbeat then renewed the dead worker's claim forever,
    so its job was never recovered and the worker hung until the deadline."""
    [job_id] = await create_campaign(1)
    solution = inline_solution(tmp_path, "lost_cancel", LOST_CANCEL)
    run_statement = database.run
    lost: list[str] = []

    async def run_losing_heartbeat_cancels(sql: str, params: Any = ()) -> Any:
        task = asyncio.current_task()
        if task is not None and task.get_name().startswith("heartbeat-") and not lost:
            solution.module.heartbeat_renewing.set()
            try:
                await asyncio.sleep(0.05)  # waiting for a pooled connection...
            except asyncio.CancelledError:
                lost.append(task.get_name())  # ...that arrives with the cancel: wait_for
                # returns it instead of raising (Python 3.11), and the cancel is lost
        return await run_statement(sql, params)

    monkeypatch.setattr(database, "run", run_losing_heartbeat_cancels)
    report = await run(solution, database, workers=1, lease=LEASE, deadline=5)

    assert lost == [f"heartbeat-{job_id}"]
    assert report.ok, report.describe()
    assert not report.deadline_hit
    assert report.counts == {"completed": 1}
    assert report.recovered == [(job_id, "worker-1")]
    assert report.metrics.elapsed() < 3  # recovered after the lease, not freed by the deadline


# -- a candidate's mistakes ----------------------------------------------------------------------

IDLE = """
async def process_job(job: Job) -> None:
    return None  # forgot to do anything
"""


async def test_a_process_job_that_makes_no_progress_stops_its_worker_with_a_stall(
    database: Database, tmp_path: Path
) -> None:
    ids = await create_campaign(3)
    solution = inline_solution(tmp_path, "idle", IDLE)
    report = await run(solution, database, workers=1, deadline=5)

    assert report.stalls == [Stall("worker-1", ids[0], "send_email", 5)]
    description = report.stalls[0].describe()
    assert f"job {ids[0]}" in description
    assert "step send_email" in description
    assert "worker-1 was stopped" in description
    assert (report.ok, report.drained, report.deadline_hit) == (False, False, False)
    assert report.counts == {"pending": 2, "running": 1}
    assert report.metrics.worker_state == {"worker-1": "stopped"}
    assert report.metrics.elapsed() < 2  # ended when its only worker stopped, not at the deadline


RAISING = """
async def process_job(job: Job) -> None:
    raise ValueError(f"no template for job {job.id}")
"""


async def test_a_process_job_that_raises_is_reported_and_repeated_errors_abort_the_run(
    database: Database, tmp_path: Path
) -> None:
    [job_id] = await create_campaign(1)
    solution = inline_solution(tmp_path, "raising", RAISING)
    report = await run(solution, database, workers=1, lease=0.2, deadline=10)

    where = f"raising.py:{line_of(solution, 'raise ValueError')}"
    assert len(report.candidate_errors) == 3  # raised, recovered after the lease, raised...
    for error in report.candidate_errors:
        assert error.describe() == (
            f"process_job on job {job_id} (send_email) raised ValueError: "
            f"no template for job {job_id} at {where}"
        )
    assert report.aborted is not None
    assert report.aborted.startswith(f"job {job_id} raised in process_job 3 times: ")
    assert f"ValueError: no template for job {job_id} at {where}" in report.aborted
    assert report.metrics.candidate_errors == {"ValueError": 3}
    assert (report.ok, report.drained, report.deadline_hit) == (False, False, False)
    assert report.describe().startswith(report.aborted)


BROKEN_CLAIM = """
async def claim_next_job(worker_id: str) -> Job | None:
    raise RuntimeError("no such column: state")
"""


async def test_a_claim_next_job_that_raises_is_reported_and_aborts_the_run(
    database: Database, tmp_path: Path
) -> None:
    await create_campaign(2)
    solution = inline_solution(tmp_path, "broken_claim", BROKEN_CLAIM)
    report = await run(solution, database, workers=2, deadline=10)

    first = report.candidate_errors[0]
    assert (first.where, first.job_id) == ("claim_next_job", None)
    assert first.describe() == (
        "claim_next_job raised RuntimeError: no such column: state at "
        f"broken_claim.py:{line_of(solution, 'raise RuntimeError')}"
    )
    assert report.aborted == f"30 errors from the solution; first: {first.describe()}"
    assert report.counts == {"pending": 2}
    assert not report.deadline_hit


NEVER_CLAIMS = """
async def claim_next_job(worker_id: str) -> Job | None:
    return None
"""


async def test_a_run_whose_jobs_are_never_claimed_ends_at_the_deadline_with_the_counts(
    database: Database, tmp_path: Path
) -> None:
    await create_campaign(5)
    solution = inline_solution(tmp_path, "never_claims", NEVER_CLAIMS)
    report = await run(solution, database, workers=3, deadline=0.5)

    assert (report.deadline_hit, report.drained, report.aborted) == (True, False, None)
    assert report.counts == {"pending": 5}
    assert report.describe() == "not drained by the deadline: {'pending': 5}"
    assert report.metrics.empty_claims > 0
    assert report.metrics.claims == 0
    assert report.metrics.elapsed() < 2


# -- metrics -----------------------------------------------------------------------------------


async def test_the_metrics_of_a_drained_run_agree_with_the_database(database: Database) -> None:
    await create_campaign(60)
    report = await run(REFERENCE, database, workers=8, deadline=30)
    metrics = report.metrics

    assert report.ok, report.describe()
    assert len(metrics.samples) >= 2
    assert metrics.samples[0].counts == {"pending": 60}  # sampled before the workers start
    assert metrics.samples[-1].counts == report.counts == await counts_in_database()
    trips = [s.round_trips for s in metrics.samples]
    assert trips == sorted(trips) and trips[-1] > 0
    assert metrics.claims == 60
    percentiles = metrics.step_percentiles()
    assert set(percentiles) == {"send_email", "analyze", "take_action"}
    for step, figures in percentiles.items():
        assert figures["n"] == 60, step
        assert 0 < figures["p50"] <= figures["p95"] <= figures["p99"], step
    assert metrics.finished_jobs() == 60
    assert metrics.throughput_per_minute() > 0
    assert metrics.finished is not None and metrics.elapsed() > 0
    assert metrics.snapshot()["jobs"] == {"completed": 60}


# -- end to end, under faults and crashes ----------------------------------------------------------


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_the_reference_keeps_every_end_to_end_invariant_under_faults_and_crashes(
    database: Database, seed: int
) -> None:
    stress = await drain_under_faults(
        database, REFERENCE, seed=seed, jobs=200, workers=20, invalid=2, lease=2.0, deadline=45
    )

    assert stress.problems == []
    # A run that exercised what it claims to: every fault kind, crashes, recoveries, and the
    # undeliverable addresses failed after one attempt each.
    outcomes = {call.outcome for call in stress.services.ledger.calls}
    assert {"rate_limited", "timeout_before", "timeout_after", "invalid", "crashed"} <= outcomes
    crashed = {crash.job_id for crash in stress.crash_plan.crashes}
    assert crashed
    assert crashed <= {job_id for job_id, _ in stress.report.recovered}
    failed = await Job.filter(status=JobStatus.FAILED).all()
    assert {job.email for job in failed} >= {e for e in campaign_emails(200) if "invalid" in e}


async def test_a_crash_between_a_permanent_error_and_its_record_is_not_a_violation(
    database: Database,
) -> None:
    """The worker dies after SendGrid's 400 and before the write that records it: nothing
    tells the next worker the address is bad, so it must send again, and no solution can do
    otherwise, so the ledger must not flag that retry as a violation."""
    ids = await create_campaign(3, invalid=1)
    [bad] = [i for i, e in zip(ids, campaign_emails(3, invalid=1), strict=True) if "invalid" in e]
    plan = CrashPlan(points=[CrashPoint.before_write(1, job_id=bad)])
    services = Services()
    report = await run(
        REFERENCE, database, services=services, crash_plan=plan, workers=2, lease=LEASE
    )

    assert report.ok, report.describe()
    assert report.counts == {"completed": 2, "failed": 1}
    [crash] = plan.crashes
    assert crash.job_id == bad
    assert services.ledger.violations == []
    assert await check_end_to_end(database, services, plan) == []


def test_a_save_within_the_same_second_and_of_the_same_size_is_loaded_anew(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Python's .pyc cache trusts a source of unchanged size and whole-second mtime: the loader
    # must not, or a quick "<" for ">" would be graded as the code before it.
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    monkeypatch.setattr(sys, "pycache_prefix", str(tmp_path / "pycache"))
    path = tmp_path / "quick.py"
    stamp = 1_700_000_000
    for saved in (1, 2):
        path.write_text(_PRELUDE + f"answer = {saved}\n")
        os.utime(path, (stamp, stamp))
        loaded = load_solution(path).module.answer
        assert loaded == saved
