"""Task D's faults one API call at a time: a job placed at any step, a script for one call of that
step, a driver that settles the job, and the diagnoses of what ``process_job`` did wrong.

A job is placed at the step under test with the harness's own SQL, holding what a correct worker
would have recorded by then; past send_email its email was really delivered (by the harness,
through the fake SendGrid in use), so that get_reply finds it. Each call is scripted by the subject
the fakes key its faults by: the address for send_email and route_customer, the message id for
get_reply (known once the harness has sent the email), the reply text for analyze_sentiment.

    with kata.faults(FaultPlan.none()):
        job = await job_at_step(kata, Step.ANALYZE)
        script_call(kata, GET_REPLY, job, [TimeoutBefore(), Succeed()])
        final = await settle(kata, job, GET_REPLY)
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from ..exceptions import ServiceError
from ..scope import acting_as
from ..sql.models import MAX_ATTEMPTS, Job, Step
from ..world.faults import ScriptedOutcome
from ..world.ledger import Call
from ..world.services import classify_sentiment, reply_for
from .diagnosis import candidate_frames, fail
from .kit import Kata

__all__ = [
    "ANALYZE_SENTIMENT",
    "API_CALLS",
    "GET_REPLY",
    "HARNESS",
    "ROUTE_CUSTOMER",
    "SEND_EMAIL",
    "ApiCall",
    "escaped",
    "gave_up_early",
    "job_at_step",
    "no_last_error",
    "not_failed",
    "retried_permanent",
    "script_call",
    "settle",
    "too_few_tries",
    "tries",
    "tries_of",
    "uncapped",
]

#: The caller name of the harness's own API calls (the email of a job placed past send_email).
HARNESS = "harness"
EMAIL = "ada@example.com"


@dataclass(frozen=True)
class ApiCall:
    """One API call of the workflow: which service answers it, at which step it is made."""

    operation: str
    service: str
    step: Step
    #: Takes an idempotency key: a retry after a timeout must find the effect already done.
    keyed: bool

    def subject(self, job: Job, seed: int) -> str:
        """What the fakes key this call's faults by, for ``job``."""
        if self.operation == "get_reply":
            assert job.message_id is not None, "a job at analyze has a message id"
            return job.message_id
        if self.operation == "analyze_sentiment":
            return reply_for(seed, job.email)
        return job.email


SEND_EMAIL = ApiCall("send_email", "sendgrid", Step.SEND_EMAIL, keyed=True)
GET_REPLY = ApiCall("get_reply", "sendgrid", Step.ANALYZE, keyed=False)
ANALYZE_SENTIMENT = ApiCall("analyze_sentiment", "sentiment", Step.ANALYZE, keyed=False)
ROUTE_CUSTOMER = ApiCall("route_customer", "crm", Step.TAKE_ACTION, keyed=True)
API_CALLS = (SEND_EMAIL, GET_REPLY, ANALYZE_SENTIMENT, ROUTE_CUSTOMER)

_ORDER = list(Step)
_TRANSIENT_OUTCOMES = ("rate_limited", "timeout_before", "timeout_after")


async def job_at_step(
    kata: Kata,
    step: Step,
    *,
    email: str = EMAIL,
    worker: str = "worker-1",
    message_id: str | None = None,
) -> Job:
    """A job for ``email`` at ``step``, running for ``worker``, with the results of the steps
    before it recorded. Past send_email the harness sends its email (through the services in use)
    unless ``message_id`` is given: then the job records that id, for a message never sent."""
    campaign = await kata.campaign()
    (job,) = await kata.add_jobs(campaign.id, [email])
    fields: dict[str, object] = {"step": step}
    if _ORDER.index(step) > _ORDER.index(Step.SEND_EMAIL):
        if message_id is None:
            with acting_as(HARNESS, job.id):
                message_id = await kata.services.send_email(
                    email, f"Hello from campaign {campaign.id}", f"harness-job-{job.id}"
                )
        fields["message_id"] = message_id
    if _ORDER.index(step) > _ORDER.index(Step.ANALYZE):
        fields["sentiment"] = classify_sentiment(reply_for(kata.services.plan.seed, email))
    await Job.filter(id=job.id).update(**fields)
    return await kata.claim_for(job.id, worker)


def script_call(kata: Kata, call: ApiCall, job: Job, outcomes: Sequence[ScriptedOutcome]) -> None:
    """From now on the fakes answer ``call``'s 1st, 2nd, ... try for ``job`` with ``outcomes``,
    and later tries succeed."""
    services = kata.services
    plan = services.plan
    subject = call.subject(job, plan.seed)
    script = {**plan.script, (call.service, subject): tuple(outcomes)}
    # The plan is a value; the services take the new one for the calls still to come.
    services.plan = dataclasses.replace(plan, script=script)


def tries_of(kata: Kata, call: ApiCall, job: Job) -> list[Call]:
    """The candidate's calls of ``call`` for ``job`` (not the harness's own)."""
    return [
        c
        for c in kata.services.ledger.calls
        if c.operation == call.operation and c.job_id == job.id and c.caller != HARNESS
    ]


async def settle(kata: Kata, job: Job, call: ApiCall, *, within: float = 30.0) -> Job:
    """Drive ``job`` with the contract's worker loop until it is completed or failed; the job as
    stored. A ServiceError that escapes ``process_job``, or a call still retrying after
    ``within`` seconds, is diagnosed."""
    try:
        async with asyncio.timeout(within) as limit:
            return await kata.process_until_settled(job)
    except ServiceError as error:  # before TimeoutError: ServiceTimeoutError is one
        fail(await escaped(kata, job, error))
    except TimeoutError:
        if not limit.expired():
            raise
        made = len(tries_of(kata, call, job))
        if made > MAX_ATTEMPTS:
            fail(uncapped(call, made) + f" (still retrying after {within:g} s)")
        fail(
            f"process_job was still at work on job {job.id} after {within:g} s, having called "
            f"{call.operation} {made} times — the waits of one step may total at most 20 s "
            "(the 429s here ask for at most 0.5 s): cap the backoff, and fail the job after "
            f"MAX_ATTEMPTS ({MAX_ATTEMPTS}) tries"
        )


# --- diagnoses -----------------------------------------------------------------------------


async def escaped(kata: Kata, job: Job, error: ServiceError) -> str:
    """``error`` escaped ``process_job`` on ``job``: which call raised it, at which step."""
    step = (await kata.fresh(job)).step
    solution = kata.solution.path
    kind = type(error).__name__
    failed = next(
        (
            c
            for c in reversed(kata.services.ledger.calls)
            if c.error == kind and c.job_id == job.id and c.caller != HARNESS
        ),
        None,
    )
    source = f" from {failed.operation}" if failed else ""
    if error.transient:
        rule = (
            f"a transient error is retried (in the call, or by returning the job to the queue), "
            f"at most MAX_ATTEMPTS ({MAX_ATTEMPTS}) tries of the step, and then the job is failed "
            "with last_error"
        )
    else:
        rule = "a permanent error fails the job at once, with last_error"
    return (
        f"process_job let {kind} escape{source} at step {step.value}{_raised_at(error, solution)}"
        f" — {rule}: no ServiceError may escape process_job"
    )


def _raised_at(error: BaseException, solution: Path) -> str:
    own = candidate_frames(error, solution)
    if not own:
        return ""
    frame = own[0]  # the outermost: where it left the candidate's code
    line = (frame.line or "").strip()
    return f" (uncaught at {solution.name}:{frame.lineno} in {frame.name}()" + (
        f": `{line}`)" if line else ")"
    )


def _advice(call: ApiCall, outcome: str) -> str:
    if outcome == "rate_limited":
        return "RateLimitError is transient: retry once retry_after has passed"
    if call.keyed:
        return (
            "ServiceTimeoutError is transient (the request may or may not have taken effect): "
            "retry with the same idempotency key"
        )
    return "ServiceTimeoutError is transient: retry it"


def gave_up_early(job: Job, call: ApiCall, tries: list[Call]) -> str:
    """A job failed although the next try of ``call`` would have succeeded."""
    transient = [c for c in tries if c.outcome in _TRANSIENT_OUTCOMES]
    if not transient:
        return (
            f"job {job.id} was failed at step {job.step.value} (last_error {job.last_error!r}) "
            f"although {call.operation} was called {len(tries)} times without a transient error "
            "— fail only when a step's retries are exhausted or the error is permanent"
        )
    advice = _advice(call, transient[-1].outcome)
    if len(tries) == 1:
        noun = "rate limit" if transient[0].outcome == "rate_limited" else "timeout"
        return (
            f"job {job.id} failed at step {job.step.value} after a single {noun} of "
            f"{call.operation} — {advice}, in the call or by returning the job to the queue, up "
            f"to MAX_ATTEMPTS ({MAX_ATTEMPTS}) tries of the step (last_error: {job.last_error!r})"
        )
    return (
        f"job {job.id} failed at step {job.step.value} after {len(tries)} tries of "
        f"{call.operation}, but MAX_ATTEMPTS is {MAX_ATTEMPTS} — {advice}, and fail the job only "
        f"after {MAX_ATTEMPTS} failed tries (last_error: {job.last_error!r})"
    )


def uncapped(call: ApiCall, tries: int) -> str:
    return (
        f"{call.operation} was called {tries} times for one job's step; MAX_ATTEMPTS is "
        f"{MAX_ATTEMPTS} — cap the tries of each step: after MAX_ATTEMPTS, fail the job with "
        "last_error"
    )


def not_failed(job: Job, why: str) -> str:
    return (
        f"job {job.id} is {job.status.value} at step {job.step.value} after {why} — the job "
        "must end failed, with last_error"
    )


def no_last_error(job: Job, why: str) -> str:
    return f"job {job.id} was failed after {why} with no last_error — record why it failed"


def retried_permanent(call: ApiCall, error: str, tries: int) -> str:
    return (
        f"{call.operation} was called {tries} times for one job after {error} — {error} is "
        "permanent: fail the job with last_error after the first attempt, never retry it"
    )


def tries(n: int) -> str:
    """The count with its noun: "1 try", "3 tries"."""
    return f"{n} try" if n == 1 else f"{n} tries"


def too_few_tries(job: Job, call: ApiCall, made: int) -> str:
    return (
        f"job {job.id} failed at step {job.step.value} after only {tries(made)} of "
        f"{call.operation} (last_error {job.last_error!r}) — a step gets MAX_ATTEMPTS "
        f"({MAX_ATTEMPTS}) tries before the job is failed, and the last of them may succeed"
    )
