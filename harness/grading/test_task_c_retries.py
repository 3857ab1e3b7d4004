"""Task C — send_email_step: sent exactly once, transient errors retried patiently and boundedly,
permanent errors failed at once, and never a network call inside a transaction.

Every test uses a job the harness created and claimed itself, scripts what SendGrid answers to
the first calls for that address, and drives ``send_email_step`` with ``drive_send_email_step``,
which accepts both correct styles: retrying inside the call, or returning the job to the queue
(the harness then re-claims it once its ``run_after`` has come, as a worker would).
"""

from __future__ import annotations

import asyncio

import pytest

from harness.exceptions import InvalidEmailError, ServiceError
from harness.faults import (
    FaultPlan,
    RateLimit,
    ScriptedOutcome,
    Succeed,
    TimeoutAfter,
    TimeoutBefore,
)
from harness.ledger import Call, ViolationKind
from harness.models import MAX_ATTEMPTS, Job, JobStatus

from .diagnosis import describe_exception, describe_violation, fail
from .kit import Kata, graded

EMAIL = "ada@example.com"

_TRANSIENT = {
    "rate_limited": ("rate limit", "RateLimitError is transient: retry after retry_after"),
    "timeout_before": (
        "timeout",
        "ServiceTimeoutError is transient (the email may or may not "
        "have gone out): retry with the same idempotency key",
    ),
    "timeout_after": (
        "timeout",
        "ServiceTimeoutError is transient (the email may or may not "
        "have gone out): retry with the same idempotency key",
    ),
}


def script(email: str, *outcomes: ScriptedOutcome) -> FaultPlan:
    """SendGrid answers the 1st, 2nd... send to ``email`` with ``outcomes``, then succeeds."""
    return FaultPlan(script={("sendgrid", email): outcomes})


def sends(kata: Kata, email: str) -> list[Call]:
    return kata.services.ledger.calls_for(service="sendgrid", subject=email, operation="send_email")


async def send(
    kata: Kata, email: str = EMAIL, *, rounds: int = MAX_ATTEMPTS + 3, within: float = 8.0
) -> Job:
    """A running job for ``email``, driven through ``send_email_step`` until it settles; the job as
    stored. A call that is still retrying after ``within`` seconds is diagnosed from the ledger."""
    job = await kata.running_job(email)
    try:
        async with asyncio.timeout(within) as limit:
            return await kata.drive_send_email_step(job, max_rounds=rounds)
    except ServiceError as error:  # before TimeoutError: ServiceTimeoutError is one
        kind = (
            "a permanent error must fail the job (status failed, with last_error), not escape"
            if isinstance(error, InvalidEmailError)
            else "a transient error must be retried (in the call, or by returning the job to the "
            "queue), not escape"
        )
        fail(f"{describe_exception(error, kata.solution.path, 'send_email_step')} — {kind}")
    except TimeoutError:
        if not limit.expired():
            raise
        fail(_still_retrying(kata, email, within))


def _still_retrying(kata: Kata, email: str, within: float) -> str:
    calls = sends(kata, email)
    if any(c.outcome == "invalid" for c in calls) and len(calls) > 1:
        return _retried_permanent(email, len(calls)) + f" (still retrying after {within:g} s)"
    if len(calls) > MAX_ATTEMPTS:
        return _uncapped(len(calls)) + f" (still retrying after {within:g} s)"
    return (
        f"send_email_step was still waiting after {within:g} s, having called send_email "
        f"{len(calls)} times for {email} — backoff should start small (a fraction of a "
        "second), honour retry_after, and give up after MAX_ATTEMPTS tries"
    )


def _retried_permanent(email: str, calls: int) -> str:
    return (
        f"send_email was called {calls} times for a permanently invalid address {email} — "
        "InvalidEmailError is permanent: fail the job with last_error after the first "
        "attempt, never retry it"
    )


def _uncapped(calls: int) -> str:
    return (
        f"send_email was called {calls} times for one job; MAX_ATTEMPTS is {MAX_ATTEMPTS} — "
        "cap the retries: after MAX_ATTEMPTS tries, fail the job with last_error"
    )


def expect_sent(kata: Kata, job: Job) -> None:
    """The job was not given up on, recorded the id SendGrid returned, and got one email."""
    calls = sends(kata, job.email)
    if job.status == JobStatus.FAILED:
        _gave_up(job, calls)
    expect_one_delivery(kata, job, calls)
    delivered = kata.services.ledger.deliveries_to(job.email)
    if job.message_id != delivered[0].message_id:
        fail(
            f"job {job.id} recorded message_id {job.message_id!r}, but the email SendGrid "
            f"delivered has id {delivered[0].message_id!r} — record what send_email returned"
        )


def _gave_up(job: Job, calls: list[Call]) -> None:
    transient = [c for c in calls if c.outcome in _TRANSIENT]
    if not transient:
        fail(
            f"job {job.id} was failed (last_error {job.last_error!r}) although send_email "
            f"was called {len(calls)} times without a transient error — fail only when "
            "retries are exhausted or the error is permanent"
        )
    noun, advice = _TRANSIENT[transient[-1].outcome]
    if len(calls) == 1:
        fail(
            f"job {job.id} failed after a single {noun} — {advice} (last_error: {job.last_error!r})"
        )
    fail(
        f"job {job.id} failed after {len(calls)} tries of send_email although the next would "
        f"have succeeded — {advice}, up to MAX_ATTEMPTS ({MAX_ATTEMPTS}) tries "
        f"(last_error: {job.last_error!r})"
    )


def expect_one_delivery(kata: Kata, job: Job, calls: list[Call]) -> None:
    delivered = kata.services.ledger.deliveries_to(job.email)
    if not delivered:
        fail(
            f"no email was delivered to {job.email}, yet job {job.id} recorded message_id "
            f"{job.message_id!r} — record the id that send_email returned"
        )
    if len(delivered) == 1:
        return
    keys = [d.key for d in delivered]
    many = f"{len(delivered)} emails were delivered to {job.email}"
    hidden = any(c.outcome == "timeout_after" for c in calls)
    after = "the retry after a timeout" if hidden else "a second send_email call"
    if None in keys:
        fail(
            f"{many}: send_email was called without an idempotency key, so {after} delivered "
            "again — pass an idempotency key derived from the job "
            f"(e.g. 'job-{job.id}-send_email')"
        )
    if len(set(keys)) > 1:
        shown = ", ".join(repr(k) for k in keys)
        fail(
            f"{many}: {after} used a new idempotency key (keys: {shown}) — derive the key from "
            "the job, not the attempt"
        )
    fail(f"{many} — one send_email_step must deliver one email")  # unreachable with one key


def expect_no_call_in_transaction(kata: Kata) -> None:
    in_transaction = kata.services.ledger.violations_of(ViolationKind.CALL_IN_TRANSACTION)
    if in_transaction:
        fail(describe_violation(in_transaction[0]))


# --- success --------------------------------------------------------------------------------


@graded("C", timeout=20)
async def test_success_records_the_message_id_the_api_returned(kata: Kata) -> None:
    job = await kata.running_job(EMAIL)
    await kata.call("send_email_step", job, worker="worker-1", job_id=job.id)
    expect_no_call_in_transaction(kata)
    stored = await kata.fresh(job)
    delivered = kata.services.ledger.deliveries_to(EMAIL)
    if stored.message_id is None:
        if not delivered:
            fail(
                f"send_email_step returned without sending job {job.id}'s email "
                "(send_email was never called) and without recording a message_id"
            )
        saved = "set on the job object but never saved" if job.message_id else "not recorded"
        fail(
            f"send_email_step delivered the email to {EMAIL} (message id "
            f"{delivered[0].message_id!r}), but the message_id was {saved} in the database — "
            f"store it on the job's row (Job.filter(id=job.id).update(message_id=...))"
        )
    if stored.status == JobStatus.FAILED:
        fail(
            f"job {job.id} was failed (last_error {stored.last_error!r}) although send_email "
            "succeeded"
        )
    if len(delivered) > 1:
        fail(
            f"{len(delivered)} emails were delivered to {EMAIL} by one send_email_step without "
            "any fault — send once, then record the message id"
        )
    expect_sent(kata, stored)
    kata.assert_no_violations()


@graded("C", timeout=20)
async def test_no_api_call_inside_a_transaction(kata: Kata) -> None:
    # A timeout first, so that the retry path is exercised too: recording the attempt and retrying
    # inside one transaction holds the connection (and SQLite's write lock) through the backoff.
    with kata.faults(script(EMAIL, TimeoutBefore(), Succeed())):
        job = await send(kata)
        expect_no_call_in_transaction(kata)
        expect_sent(kata, job)
        kata.assert_no_violations()


# --- transient errors -------------------------------------------------------------------------


@graded("C", timeout=20)
async def test_one_rate_limit_does_not_fail_the_job(kata: Kata) -> None:
    with kata.faults(script(EMAIL, RateLimit(retry_after=0.1), Succeed())):
        job = await send(kata)
        expect_sent(kata, job)
        kata.assert_no_violations()


@graded("C", timeout=20)
async def test_retries_wait_at_least_retry_after(kata: Kata) -> None:
    # Growing retry_after values: a fixed sleep, or remembering only the first one, is too early.
    with kata.faults(
        script(EMAIL, RateLimit(retry_after=0.1), RateLimit(retry_after=0.25), Succeed())
    ):
        job = await send(kata)
        early = kata.services.ledger.violations_of(ViolationKind.RETRY_BEFORE_RETRY_AFTER)
        if early:
            fail(describe_violation(early[0]))
        expect_sent(kata, job)
        kata.assert_no_violations()


@graded("C", timeout=20)
async def test_rate_limits_are_retried_until_the_email_is_sent(kata: Kata) -> None:
    with kata.faults(
        script(EMAIL, RateLimit(retry_after=0.05), RateLimit(retry_after=0.05), Succeed())
    ):
        job = await send(kata)
        expect_sent(kata, job)
        kata.assert_no_violations()


@graded("C", timeout=20)
async def test_timeout_before_delivery_is_retried(kata: Kata) -> None:
    with kata.faults(script(EMAIL, TimeoutBefore(), Succeed())):
        job = await send(kata)
        expect_sent(kata, job)
        kata.assert_no_violations()


@graded("C", timeout=20)
async def test_timeout_after_delivery_is_retried_without_a_second_email(kata: Kata) -> None:
    # The email went out but the response was lost: only the same idempotency key makes the retry
    # answer with that message instead of delivering another.
    with kata.faults(script(EMAIL, TimeoutAfter(), Succeed())):
        job = await send(kata)
        expect_sent(kata, job)
        kata.assert_no_violations()


# --- giving up ----------------------------------------------------------------------------


@graded("C", timeout=40)
async def test_permanent_error_fails_the_job_after_exactly_one_attempt(kata: Kata) -> None:
    for email in ("grace@example.invalid", "ada..lovelace@example.com"):
        job = await send(kata, email, within=12.0)
        calls = sends(kata, email)
        if len(calls) > 1:
            fail(_retried_permanent(email, len(calls)))
        if not calls:
            fail(
                f"job {job.id} was failed without calling send_email for {email} — let SendGrid "
                "judge the address: exactly one attempt, then fail on InvalidEmailError"
            )
        if job.status != JobStatus.FAILED:
            fail(
                f"job {job.id} is {job.status.value} after InvalidEmailError for {email} — a "
                "permanent error fails the job at once"
            )
        if not job.last_error:
            fail(
                f"job {job.id} was failed for InvalidEmailError ({email}) with no last_error — "
                "record why it failed"
            )
    kata.assert_no_violations()


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(RateLimit(retry_after=0.05), id="rate_limits"),
        pytest.param(TimeoutBefore(), id="timeouts"),
    ],
)
@graded("C", timeout=30)
async def test_persistent_transient_errors_fail_the_job_after_max_attempts(
    kata: Kata, fault: ScriptedOutcome
) -> None:
    outcomes = [fault] * (MAX_ATTEMPTS + 3) + [Succeed()]
    with kata.faults(script(EMAIL, *outcomes)):
        # Enough rounds for the script to end in a success: retrying forever returns, and is
        # diagnosed from the number of calls instead of hanging the grader.
        job = await send(kata, rounds=len(outcomes) + 1, within=15.0)
        calls = sends(kata, EMAIL)
        if len(calls) > MAX_ATTEMPTS:
            fail(_uncapped(len(calls)))
        if job.status != JobStatus.FAILED:
            fail(
                f"the job never failed: job {job.id} is {job.status.value} after "
                f"{len(calls)} transient errors — after MAX_ATTEMPTS ({MAX_ATTEMPTS}) tries, "
                "fail it with last_error"
            )
        if len(calls) < 2:
            _gave_up(job, calls)
        if not job.last_error:
            fail(
                f"job {job.id} was failed after {len(calls)} tries with no last_error — record "
                "the last error, so that an operator can see why"
            )
        kata.assert_no_violations()
