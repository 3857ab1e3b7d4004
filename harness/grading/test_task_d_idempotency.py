"""Task D — process_job: every step once, every side effect once, whatever the interleaving.

Each test starts from a job the harness created and claimed itself (Task D never depends on
Task A), then drives ``process_job`` the way the contract's worker loop does: once per step, with
stale job objects, with two workers at once, with workers crashing at every point of every step
(a worker that swallows its crash and carries on is caught: ``afterlife``), with every fault
class scripted on every API call of every step (``step_faults``), with the job taken out of
running while a worker is mid-call, with one address in two campaigns, and — under hypothesis
(``exploration``) — with faults and crashes together. Choreographed fake services
(``choreography``) make "two workers inside the same API call" and "a worker paused mid-call
while another moves on" happen every time, not when the scheduler happens to allow it.
"""

from __future__ import annotations

import asyncio
import dataclasses

import pytest

from harness.exceptions import ServiceError
from harness.sql.models import MAX_ATTEMPTS, Job, JobStatus, Step
from harness.sql.orm import utcnow
from harness.world.crashes import CrashPlan, CrashPoint, use_crash_plan
from harness.world.faults import (
    FaultPlan,
    RateLimit,
    ScriptedOutcome,
    Succeed,
    TimeoutAfter,
    TimeoutBefore,
)

from .choreography import Rendezvous, copy_job, paused_in_first_call
from .diagnosis import fail
from .exploration import WRITES_OF_A_JOB, explore, first_counterexample, harness_claim, scenarios
from .invariants import check_invariants
from .kit import FULL_ONLY, Kata, graded
from .step_faults import (
    ANALYZE_SENTIMENT,
    API_CALLS,
    GET_REPLY,
    ROUTE_CUSTOMER,
    SEND_EMAIL,
    ApiCall,
    escaped,
    gave_up_early,
    job_at_step,
    no_last_error,
    not_failed,
    retried_permanent,
    script_call,
    settle,
    too_few_tries,
    tries,
    tries_of,
    uncapped,
)

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
        kata.watch(crash_plan=crash_plan)
        kata.explain_problem(problems[0])
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
    stale_values = False
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
    elif ahead.status is JobStatus.RUNNING and after.status is JobStatus.FAILED:
        # No API failed here: a failure means it ran the step with the stale object's values.
        harm.append(f"failed it (last_error {after.last_error!r})")
        stale_values = True
    for _, field in _RESULTS:
        if getattr(ahead, field) is not None and getattr(after, field) != getattr(ahead, field):
            harm.append(
                f"overwrote its {field} {getattr(ahead, field)!r} with {getattr(after, field)!r}"
            )
    # No step means to change these, the step that completes the job included.
    for field in ("campaign_id", "email", "created_at"):
        if getattr(after, field) != getattr(ahead, field):
            harm.append(
                f"changed its {field} from {getattr(ahead, field)!r} to {getattr(after, field)!r}"
            )
    # Running the step the job is really at is right; doing one already done is not.
    if kata.deliveries_for(ahead) > max(sent, 1):
        harm.append("sent a second email")
    if kata.actions_for(ahead) > max(acted, 1):
        harm.append("applied a second CRM action")
    if stale_values:
        fail(
            f"process_job was given a stale job object (it said step {stale.step.value}, "
            f"message_id {stale.message_id!r}, sentiment {stale.sentiment!r}; the database had "
            f"job {ahead.id} at {ahead.step.value} with message_id {ahead.message_id!r}) and "
            f"{', and '.join(harm)} — it ran the step with values from the object it was given: "
            "take every value (message_id, sentiment, attempts) from the row as it is now "
            "(await job.refresh(), or the row your re-read returned), not from the caller's copy"
        )
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
    kata.watch(crash_plan=plan)  # its crashes belong in the timeline of any failure
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
    with kata.serving(Rendezvous()):
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
                    "id = ? AND step = <the step you ran> AND status = 'running') and change "
                    "nothing when no row matches"
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


# --- every fault on every API call ---------------------------------------------------------------
# Each test places a job at the step of one API call and scripts that call: every call of every
# step follows Task C's rules (D1). Budgets allow a textbook 1, 2, 4, 8 s backoff (C3).

_TRANSIENT_FAULTS = {
    "rate-limit": RateLimit(retry_after=0.2),
    "timeout-before-the-effect": TimeoutBefore(),
    "timeout-after-the-effect": TimeoutAfter(),
}
# The fast tier grades a diagonal of the call x fault grid (every call once, every fault at
# least once); the full tier grades all of it.
_FAST_DIAGONAL = {
    ("send_email", "timeout-after-the-effect"),
    ("get_reply", "rate-limit"),
    ("analyze_sentiment", "timeout-before-the-effect"),
    ("route_customer", "rate-limit"),
}
_CALL_FAULTS = [
    pytest.param(
        call,
        fault,
        id=f"{call.operation}-{name}",
        marks=() if (call.operation, name) in _FAST_DIAGONAL else FULL_ONLY,
    )
    for call in API_CALLS
    for name, fault in _TRANSIENT_FAULTS.items()
]


@pytest.mark.parametrize(("call", "fault"), _CALL_FAULTS)
@graded("D", timeout=40)
async def test_a_transient_error_in_any_api_call_is_retried_and_the_job_completes(
    kata: Kata, call: ApiCall, fault: ScriptedOutcome
) -> None:
    with kata.faults(FaultPlan.none()):
        job = await job_at_step(kata, call.step)
        script_call(kata, call, job, [fault, Succeed()])
        final = await settle(kata, job, call)
        if final.status is JobStatus.FAILED:
            fail(gave_up_early(final, call, tries_of(kata, call, job)))
        kata.assert_no_violations()
        await _judge(kata, job, f"after one {type(fault).__name__} of {call.operation}: ")


# analyze_sentiment has no permanent error, and route_customer's only one (a 400 for a sentiment
# other than the three) needs a sentiment that analyze_sentiment never gives: no correct worker
# can meet either, so only send_email's and get_reply's permanent errors are graded.
_PERMANENT = [
    pytest.param(SEND_EMAIL, "InvalidEmailError", id="send_email-invalid-address"),
    pytest.param(GET_REPLY, "MessageNotFoundError", id="get_reply-message-not-found"),
]


@pytest.mark.parametrize(("call", "error"), _PERMANENT)
@graded("D", timeout=40)
async def test_a_permanent_error_in_any_api_call_fails_the_job_after_one_try(
    kata: Kata, call: ApiCall, error: str
) -> None:
    with kata.faults(FaultPlan.none()):
        if call is SEND_EMAIL:
            job = await job_at_step(kata, Step.SEND_EMAIL, email="grace@example.invalid")
        else:  # a message id SendGrid never issued: get_reply answers 404
            job = await job_at_step(kata, Step.ANALYZE, message_id="msg-never-sent")
        final = await settle(kata, job, call)
        made = len(tries_of(kata, call, job))
        why = f"{error} from {call.operation}"
        if made > 1:
            fail(retried_permanent(call, error, made))
        if made == 0:
            fail(
                f"job {job.id} ended {final.status.value} at step {final.step.value} without "
                f"calling {call.operation} — run the step: let the API judge, then fail the job on "
                f"{error} after exactly one attempt"
            )
        if final.status is not JobStatus.FAILED:
            fail(not_failed(final, why))
        if not final.last_error:
            fail(no_last_error(final, why))
        kata.assert_no_violations()


@pytest.mark.parametrize(
    "call",
    [
        # The fast tier: one call of a later step (send_email's budget is Task C's own test).
        pytest.param(call, id=call.operation, marks=() if call is GET_REPLY else FULL_ONLY)
        for call in API_CALLS
    ],
)
@graded("D", timeout=40)
async def test_transient_errors_in_any_api_call_fail_the_job_after_max_attempts_tries(
    kata: Kata, call: ApiCall
) -> None:
    # A mix of every transient error (one budget whatever the mix), then a success: retrying
    # beyond MAX_ATTEMPTS ends, and is diagnosed from the count instead of hanging the grader.
    mix = (RateLimit(retry_after=0.05), TimeoutBefore(), TimeoutAfter())
    outcomes = [mix[n % len(mix)] for n in range(MAX_ATTEMPTS + 3)]
    with kata.faults(FaultPlan.none()):
        job = await job_at_step(kata, call.step)
        script_call(kata, call, job, [*outcomes, Succeed()])
        final = await settle(kata, job, call)
        made = len(tries_of(kata, call, job))
        why = f"{made} transient errors of {call.operation}"
        if made > MAX_ATTEMPTS:
            fail(uncapped(call, made))
        if final.status is not JobStatus.FAILED:
            fail(not_failed(final, why))
        if made < MAX_ATTEMPTS:
            fail(too_few_tries(final, call, made))
        if not final.last_error:
            fail(no_last_error(final, why))
        kata.assert_no_violations()


@graded("D", timeout=40)
async def test_each_step_has_its_own_budget_of_max_attempts_tries(kata: Kata) -> None:
    # Each step stays within its budget, the job as a whole does not: a count of tries that is
    # not reset when the job advances fails it at take_action. Five errors in all, in two steps:
    # a backoff of up to 20 s per step (C3) still settles within the time limit.
    faults: dict[ApiCall, list[ScriptedOutcome]] = {
        ANALYZE_SENTIMENT: [RateLimit(retry_after=0.05), TimeoutAfter()],
        ROUTE_CUSTOMER: [TimeoutBefore(), RateLimit(retry_after=0.05), TimeoutAfter()],
    }
    with kata.faults(FaultPlan.none()):
        job = await kata.running_job()
        for call, outcomes in faults.items():
            script_call(kata, call, job, [*outcomes, Succeed()])
        final = await settle(kata, job, ROUTE_CUSTOMER, within=36.0)
        if final.status is JobStatus.FAILED:
            call = next((c for c in faults if c.step is final.step), SEND_EMAIL)
            made = tries_of(kata, call, job)
            # A step's tries: the most tries of any of its calls (analyze calls two APIs a try).
            before = sum(
                max(len(tries_of(kata, c, job)) for c in API_CALLS if c.step is step)
                for step in _ORDER[: _ORDER.index(final.step)]
            )
            if not before or not made:
                fail(gave_up_early(final, call, made))
            fail(
                f"each step has its own budget of MAX_ATTEMPTS ({MAX_ATTEMPTS}) tries, yet job "
                f"{job.id} failed at step {final.step.value} after {tries(len(made))} of "
                f"{call.operation} (last_error {final.last_error!r}): the tries of the steps "
                f"before it ({before}) were counted too — start each step's count afresh when "
                "the job advances (e.g. reset attempts to 0 in the UPDATE that advances it)"
            )
        kata.assert_no_violations()
        await _judge(kata, job, "after transient errors in every step, each within its budget: ")


# --- a job that left running under a worker's feet ------------------------------------------------
# Every write (record, advance, requeue, fail) against every change of the row under it is graded
# by one table: test_write_paths.py.


# --- the same customer in two campaigns -----------------------------------------------------------


@graded("D", timeout=30)
async def test_the_same_address_in_two_campaigns_gets_two_emails_and_two_crm_actions(
    kata: Kata,
) -> None:
    with kata.faults(FaultPlan.none()):
        campaigns = [await kata.campaign("Spring launch"), await kata.campaign("Autumn launch")]
        jobs = [await kata.running_job(campaign_id=c.id) for c in campaigns]
        finals = []
        for job in jobs:
            try:
                finals.append(await kata.process_until_settled(job))
            except ServiceError as error:  # a 422 for a key shared by both jobs, say
                _no_key_shared(kata, jobs, "send_email", Step.SEND_EMAIL)
                _no_key_shared(kata, jobs, "route_customer", Step.TAKE_ACTION)
                fail(await escaped(kata, job, error))
        _no_key_shared(kata, finals, "send_email", Step.SEND_EMAIL)
        _no_key_shared(kata, finals, "route_customer", Step.TAKE_ACTION)
        for final in finals:
            if final.status is not JobStatus.COMPLETED:
                why = f" ({final.last_error})" if final.last_error else ""
                fail(
                    f"job {final.id} ended {final.status.value} at step {final.step.value}{why}, "
                    "although no API failed and its address has a job in another campaign too"
                )
        _one_each(kata, finals, "message_id", len(kata.services.ledger.deliveries))
        _one_each(kata, finals, "action_id", len(kata.services.ledger.actions))
        problems = await check_invariants(kata.services, jobs=finals)
        if problems:
            kata.explain_problem(problems[0])
            fail(f"after one address was processed in two campaigns: {problems[0]}")


def _same_address(jobs: list[Job]) -> str:
    first, second = jobs
    return (
        f"the same address in two campaigns is two jobs: jobs {first.id} and {second.id} "
        f"(campaigns {first.campaign_id} and {second.campaign_id}, both {first.email})"
    )


def _no_key_shared(kata: Kata, jobs: list[Job], operation: str, step: Step) -> None:
    calls = [c for c in kata.services.ledger.calls if c.operation == operation]
    keys = [{c.idempotency_key or "" for c in calls if c.job_id == job.id} - {""} for job in jobs]
    shared = sorted(keys[0] & keys[1])
    if not shared:
        return
    noun = "email" if operation == "send_email" else "CRM action"
    second = [c for c in calls if c.job_id == jobs[1].id]
    if any(c.outcome == "key_reused" for c in second):
        answer = "refused it (422: the key came back with other arguments)"
    else:
        answer = f"answered it with the first job's {noun}"
    fail(
        f"{_same_address(jobs)} — {operation} was given the idempotency key {shared[0]!r} for "
        f"both, so the API took the second job's call for a retry of the first job's and "
        f"{answer}: derive the key "
        f"from the job and the step (e.g. f'job-{{job.id}}-{step.value}'), never from the "
        "address alone"
    )


def _one_each(kata: Kata, jobs: list[Job], field: str, made: int) -> None:
    """Each job recorded its own ``field``, and the API made one effect per job."""
    recorded = [getattr(job, field) for job in jobs]
    if made != len(jobs) or len(set(recorded)) != len(jobs):
        noun = "email" if field == "message_id" else "CRM action"
        fail(
            f"{_same_address(jobs)} — each gets its own {noun}, yet they got {made} between them "
            f"and recorded {field}s {recorded[0]!r} and {recorded[1]!r}: record the id the API "
            "returned for this job's own call"
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
