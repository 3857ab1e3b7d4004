"""Task D — process_job: every step once, every side effect once, whatever the interleaving.

Each test starts from a job the harness created and claimed itself (Task D never depends on
Task A), then drives ``process_job`` the way the contract's worker loop does: once per step, with
stale job objects, with two workers at once, with workers crashing at every point of every step,
and — under hypothesis (``exploration``) — with faults and crashes together. Choreographed fake
services (``choreography``) make "two workers inside the same API call" and "a worker paused
mid-call while another moves on" happen every time, not when the scheduler happens to allow it.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from harness.crashes import CrashPlan, CrashPoint, use_crash_plan
from harness.models import Job, JobStatus, Step
from harness.orm import utcnow

from .choreography import Rendezvous, copy_job, paused_in_first_call, serving
from .diagnosis import fail
from .exploration import WRITES_OF_A_JOB, explore, first_counterexample, harness_claim, scenarios
from .invariants import check_invariants
from .kit import Kata, graded

_ORDER = list(Step)
_FINAL = (JobStatus.COMPLETED, JobStatus.FAILED)
#: What each step records when its side effect is done, in workflow order.
_RESULTS = (
    (Step.SEND_EMAIL, "message_id"),
    (Step.ANALYZE, "sentiment"),
    (Step.TAKE_ACTION, "action_id"),
)
#: The API call that does each step's side effect.
_API_OF_STEP = (
    ("send_email", Step.SEND_EMAIL),
    ("analyze_sentiment", Step.ANALYZE),
    ("route_customer", Step.TAKE_ACTION),
)
#: Fields whose change means a worker changed the job (not just touched updated_at).
_PROGRESS = (
    "status",
    "step",
    "worker_id",
    "attempts",
    "last_error",
    "run_after",
    "message_id",
    "sentiment",
    "action_id",
)


# --- small helpers ------------------------------------------------------------------------------


def _progress(job: Job) -> dict[str, object]:
    return {name: getattr(job, name) for name in _PROGRESS}


def _missing_result(job: Job) -> str | None:
    """The first step the job moved past without recording its result, e.g. "job 3 is past
    step send_email (now analyze, running) with no message_id"."""
    for step, field in _RESULTS:
        if _ORDER.index(job.step) > _ORDER.index(step) and getattr(job, field) is None:
            return (
                f"job {job.id} is past step {step.value} (now {job.step.value}, "
                f"{job.status.value}) with no {field}"
            )
    return None


async def _expire_claim(kata: Kata, job: Job, *, new_worker: str) -> Job:
    """What the lease does to a worker that stopped renewing its claim: the job goes back to the
    queue, and another worker claims it."""
    await kata.expire_claim(job.id, job.worker_id)
    return await kata.claim_for(job.id, new_worker)


async def _judge(kata: Kata, job: Job, context: str, crash_plan: CrashPlan | None = None) -> None:
    problems = await check_invariants(kata.services, crash_plan, jobs=[job])
    if problems:
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        fail(f"{context}{problems[0]}{more}")


# --- one worker, one job -------------------------------------------------------------------------


@graded("D", timeout=30)
async def test_a_job_walks_every_step_to_completed(kata: Kata) -> None:
    job = await kata.running_job()
    final = await kata.process_until_settled(job)
    if final.status is not JobStatus.COMPLETED:
        why = f" ({final.last_error})" if final.last_error else ""
        fail(
            f"job {job.id} ended {final.status.value} at step {final.step.value}{why} although no "
            "API failed: process_job should run each step and advance until the job is completed"
        )
    walked = [Step.SEND_EMAIL] + [
        t.new_step for t in await kata.transitions(job.id) if t.new_step != t.old_step
    ]
    if walked != _ORDER:
        fail(
            f"job {job.id} walked {' -> '.join(s.value for s in walked)}; the workflow is "
            f"{' -> '.join(s.value for s in _ORDER)}, one step at a time"
        )
    await kata.assert_advanced_once(job)
    await _judge(kata, job, "after one worker processed a job to the end: ")


@graded("D", timeout=30)
async def test_a_stale_job_object_processed_again_changes_nothing(kata: Kata) -> None:
    claimed = await kata.running_job()
    stale = copy_job(claimed)  # the job as it was at the claim: step send_email, nothing recorded
    for _ in range(2):
        current = await kata.fresh(claimed)
        if current.status is not JobStatus.RUNNING or current.step is Step.TAKE_ACTION:
            break
        await kata.call("process_job", current, worker="worker-1", job_id=claimed.id)
    ahead = await kata.fresh(claimed)
    if ahead.status is JobStatus.RUNNING and ahead.step is not Step.SEND_EMAIL:
        await _process_stale(kata, stale, ahead)
    final = await kata.process_until_settled(claimed)
    await _process_stale(kata, stale, final)
    await kata.assert_advanced_once(claimed)
    await _judge(kata, claimed, "after process_job was called again with a stale job object: ")


async def _process_stale(kata: Kata, stale: Job, ahead: Job) -> None:
    sent, acted = kata.deliveries_for(ahead), kata.actions_for(ahead)
    calls = len(kata.services.ledger.calls)
    await kata.call("process_job", copy_job(stale), worker="worker-1", job_id=ahead.id)
    after = await kata.fresh(ahead)
    harm = []
    redone = [
        op
        for op, step in _API_OF_STEP
        if _ORDER.index(step) < _ORDER.index(ahead.step)
        and any(c.operation == op for c in kata.services.ledger.calls[calls:])
    ]
    if redone:
        harm.append(f"re-ran work already done (called {' and '.join(redone)} again)")
    if _ORDER.index(after.step) < _ORDER.index(ahead.step) or (
        ahead.status in _FINAL and after.status is not ahead.status
    ):
        harm.append(f"moved the job back to {after.step.value} ({after.status.value})")
    for _, field in _RESULTS:
        if getattr(ahead, field) is not None and getattr(after, field) != getattr(ahead, field):
            harm.append(
                f"overwrote its {field} {getattr(ahead, field)!r} with {getattr(after, field)!r}"
            )
    # Running the step the job is really at is right; doing one already done is not.
    if kata.deliveries_for(ahead) > max(sent, 1):
        harm.append("sent a second email")
    if kata.actions_for(ahead) > max(acted, 1):
        harm.append("applied a second CRM action")
    if len(harm) > len(redone[:1]):  # re-running an idempotent call alone harms nothing
        fail(
            f"process_job was given a stale job object (it said step {stale.step.value}; the "
            f"database had job {ahead.id} at {ahead.step.value}, {ahead.status.value}) and "
            f"{', and '.join(harm)} — re-read the job (await job.refresh()) before running its "
            "step, and advance only if it is still at the step you ran"
        )


# --- crashes -----------------------------------------------------------------------------------

_CRASH_POINTS = [
    pytest.param(CrashPoint.after_effect("sendgrid"), id="right-after-the-email-is-delivered"),
    pytest.param(CrashPoint.after_effect("crm"), id="right-after-the-crm-action"),
    *(
        pytest.param(CrashPoint.before_write(n), id=f"before-database-write-{n}")
        for n in range(1, WRITES_OF_A_JOB + 3)
    ),
]


@pytest.mark.parametrize("point", _CRASH_POINTS)
@graded("D", timeout=30)
async def test_a_crash_at_any_point_neither_duplicates_nor_loses_work(
    kata: Kata, point: CrashPoint
) -> None:
    plan = CrashPlan(points=[point])
    job = await kata.running_job()
    with use_crash_plan(plan):
        try:
            final = await kata.process_until_settled(job)
        except (Exception, pytest.fail.Exception):
            await _fail_if_lost(kata, plan, job)
            raise
    await _fail_if_lost(kata, plan, job)
    crashed = _crashed(plan, job)
    if final.status is not JobStatus.COMPLETED:
        why = f" ({final.last_error})" if final.last_error else ""
        fail(
            f"{crashed}job {job.id} ended {final.status.value} at step {final.step.value}{why}: "
            "a crash is not a failure — processed again, the job continues where it stopped"
        )
    await kata.assert_advanced_once(job)
    await _judge(kata, job, crashed, plan)


def _crashed(plan: CrashPlan, job: Job) -> str:
    crashes = plan.crashes_of(job.id)
    return f"the worker crashed {crashes[0].point}; then " if crashes else ""


async def _fail_if_lost(kata: Kata, plan: CrashPlan, job: Job) -> None:
    lost = _missing_result(await kata.fresh(job))
    if lost:
        fail(
            f"{_crashed(plan, job)}{lost}: the step was advanced before its side effect was "
            "done and recorded, so a crash in between loses it — do the step's work, record "
            "its result, and only then advance"
        )


# --- two workers -------------------------------------------------------------------------------


@graded("D", timeout=30)
async def test_two_workers_on_one_job_deliver_and_act_once(kata: Kata) -> None:
    # No rate limits here: the fakes key retry_after by request, so worker-2 would be blamed
    # for a 429 given to worker-1.
    job = await kata.running_job()
    with serving(kata, Rendezvous()):
        for _ in range(2 * len(_ORDER)):
            current = await kata.fresh(job)
            if current.status in _FINAL:
                break
            if current.status is JobStatus.PENDING:  # returned to the queue: claim it again
                await asyncio.sleep(max(0.0, (current.run_after - utcnow()).total_seconds()))
                current = await kata.claim_for(job.id, "worker-1")
            results = await asyncio.gather(
                *(
                    kata.call("process_job", copy_job(current), worker=worker, job_id=job.id)
                    for worker in ("worker-1", "worker-2")
                ),
                return_exceptions=True,
            )
            for result in results:
                if isinstance(result, BaseException):
                    raise result
        else:
            final = await kata.fresh(job)
            fail(
                f"with two workers processing job {job.id} at once it was still "
                f"{final.status.value} at step {final.step.value} after {2 * len(_ORDER)} "
                "rounds — each round, one of them should advance it"
            )
        context = "with two workers processing one job at once (inside the same API calls): "
        await _judge(kata, job, context)
        await kata.assert_advanced_once(job)


@graded("D", timeout=30)
async def test_a_worker_paused_mid_step_cannot_undo_newer_progress(kata: Kata) -> None:
    job = await kata.running_job(worker="worker-2")
    async with paused_in_first_call(kata, job, "worker-2") as paused:
        if paused.held:
            await _expire_claim(kata, job, new_worker="worker-1")
            ahead = await kata.process_until_settled(job, worker="worker-1")
            await paused.resume()
            after = await kata.fresh(job)
            back = _ORDER.index(after.step) < _ORDER.index(ahead.step) or (
                after.status is not ahead.status
            )
            if back or any(getattr(after, f) != getattr(ahead, f) for _, f in _RESULTS):
                fail(
                    f"worker-2 read job {job.id} at step {paused.read.step.value} and was still "
                    f"inside {paused.held} when its claim expired; worker-1 then took the job to "
                    f"{ahead.step.value} ({ahead.status.value}), and when worker-2's call "
                    f"returned it wrote the job back to {after.step.value} "
                    f"({after.status.value}) — an advance that does not check the current step "
                    "overwrites newer progress: advance with a compare-and-set (UPDATE ... WHERE "
                    "id = ? AND step = <the step you ran>) and change nothing when no row matches"
                )
        await paused.resume()
        await kata.process_until_settled(job, worker="worker-1")
        await _judge(kata, job, "after a worker paused mid-step finished behind another one: ")


@graded("D", timeout=30)
async def test_a_worker_whose_claim_was_taken_over_is_noted_when_it_still_writes(
    kata: Kata, request: pytest.FixtureRequest
) -> None:
    """Advice, never a failure: the contract does not ask for fencing, real queues do."""
    job = await kata.running_job(worker="worker-1")
    async with paused_in_first_call(kata, job, "worker-1") as paused:
        if paused.held:
            taken = await _expire_claim(kata, job, new_worker="worker-2")
            await paused.resume()
            after = await kata.fresh(job)
            if _progress(after) != _progress(taken):
                advice = _fencing_advice(job, paused.held, taken, after)
                request.node.user_properties.append(("advice", advice))
        await paused.resume()
        await kata.process_until_settled(job, worker="worker-2")
        await _judge(kata, job, "after a worker's claim was taken over mid-step: ")


def _fencing_advice(job: Job, call: str | None, taken: Job, after: Job) -> str:
    return (
        f"worker-1's claim on job {job.id} had expired and worker-2 had claimed it, yet "
        f"worker-1 still changed the job when its slow {call} returned (step "
        f"{taken.step.value} -> {after.step.value}). The contract does not require it, but real "
        "queues fence stale workers: put the claim in the write's WHERE (... AND worker_id = ?), "
        "so that a worker that lost its claim changes nothing."
    )


# --- faults and crashes, explored ----------------------------------------------------------------


@graded("D", timeout=120, full_only=True)
async def test_faults_and_crashes_never_break_the_invariants(kata: Kata) -> None:
    solution = dataclasses.replace(kata.solution, claim_next_job=harness_claim)
    diagnosis = await first_counterexample(
        scenarios(), lambda scenario, n: explore(kata, solution, scenario, n)
    )
    if diagnosis:
        fail(diagnosis)
