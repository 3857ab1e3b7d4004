"""Task C — send_email_step: sent exactly once per job, transient errors retried patiently and
within one budget of MAX_ATTEMPTS tries, permanent errors failed at once, and neither a network
call nor a backoff wait inside a transaction (a ``time.sleep`` anywhere fails through the sleep
guard, see ``blocking.py``).

Every test uses a job the harness created and claimed itself, scripts what SendGrid answers to
the first calls for that address, and drives ``send_email_step`` with ``drive_send_email_step``,
which accepts both correct styles: retrying inside the call, or returning the job to the queue
(the harness then re-claims it once its ``run_after`` has come, as a worker would).

Waits are never timed against a tight bound: any backoff whose waits for one step total at most
20 s passes (``PATIENCE`` leaves room for the calls themselves), and the rules are checked from
what the fake SendGrid saw, call by call.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from itertools import pairwise

import pytest

from harness.exceptions import IdempotencyKeyReusedError, InvalidEmailError, ServiceError
from harness.sql.models import MAX_ATTEMPTS, Job, JobStatus, Step
from harness.world.differences import how_it_differs
from harness.world.faults import (
    FaultPlan,
    RateLimit,
    ScriptedOutcome,
    Succeed,
    TimeoutAfter,
    TimeoutBefore,
)
from harness.world.ledger import Call, ViolationKind
from harness.world.referee import RETRY_AFTER_TOLERANCE
from harness.world.replies import invalid_email_reason

from ..scope import acting_as
from .choreography import Gate, copy_job
from .diagnosis import describe_exception, describe_violation, fail
from .kit import FULL_ONLY, Kata, graded

EMAIL = "ada@example.com"

PATIENCE = 25.0
"""Seconds one step may take before it is diagnosed as still retrying: the contract allows waits
totalling 20 s per step (so 1, 2, 4, 8 s passes), and the calls take a little more."""
TIMEOUT = PATIENCE + 10

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
    kata: Kata, email: str = EMAIL, *, rounds: int = MAX_ATTEMPTS + 3, within: float = PATIENCE
) -> Job:
    """A running job for ``email``, driven through ``send_email_step`` until it settles; the job as
    stored."""
    return await settle(kata, await kata.running_job(email), rounds=rounds, within=within)


async def settle(
    kata: Kata, job: Job, *, rounds: int = MAX_ATTEMPTS + 3, within: float = PATIENCE
) -> Job:
    """Drive ``job`` through ``send_email_step`` until it settles; the job as stored. A call that is
    still retrying after ``within`` seconds is diagnosed from the ledger."""
    try:
        async with asyncio.timeout(within) as limit:
            return await kata.drive_send_email_step(
                job, worker=job.worker_id or "worker-1", max_rounds=rounds
            )
    except ServiceError as error:  # before TimeoutError: ServiceTimeoutError is one
        if shared := _shared_key(kata):
            fail(shared)
        if isinstance(error, IdempotencyKeyReusedError) and (reused := _key_reused(kata, job)):
            fail(reused)
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
        fail(_shared_key(kata) or _still_retrying(kata, job.email, within))


def _still_retrying(kata: Kata, email: str, within: float) -> str:
    calls = sends(kata, email)
    if any(c.outcome == "invalid" for c in calls) and len(calls) > 1:
        return _retried_permanent(email, len(calls)) + f" (still retrying after {within:g} s)"
    if len(calls) > MAX_ATTEMPTS:
        return _uncapped(calls) + f" (still retrying after {within:g} s)"
    return (
        f"send_email_step was still waiting after {within:g} s, having called send_email "
        f"{len(calls)} times for {email} — the waits of one step may total at most 20 s (the "
        "429s here ask for at most 0.5 s): cap the backoff, and fail the job after MAX_ATTEMPTS "
        f"({MAX_ATTEMPTS}) tries"
    )


def _retried_permanent(email: str, calls: int) -> str:
    return (
        f"send_email was called {calls} times for a permanently invalid address {email} — "
        "InvalidEmailError is permanent: fail the job with last_error after the first "
        "attempt, never retry it"
    )


def _uncapped(calls: list[Call]) -> str:
    errors = Counter(_TRANSIENT[c.outcome][0] for c in calls if c.outcome in _TRANSIENT)
    if len(errors) > 1 and max(errors.values()) <= MAX_ATTEMPTS:
        # Each kind of error kept within MAX_ATTEMPTS, the step did not: one budget per kind.
        return (
            f"send_email was called {len(calls)} times for one job ({_tally(calls)}) — "
            f"MAX_ATTEMPTS ({MAX_ATTEMPTS}) counts every try of the step, whatever the mix of "
            "errors: keep one count for rate limits and timeouts together, and fail the job "
            "with last_error after MAX_ATTEMPTS tries"
        )
    return (
        f"send_email was called {len(calls)} times for one job; MAX_ATTEMPTS is {MAX_ATTEMPTS} — "
        "cap the retries: after MAX_ATTEMPTS tries, fail the job with last_error"
    )


def _tally(calls: list[Call]) -> str:
    """``4 rate limits and 4 timeouts``: the transient errors among ``calls``."""
    errors = Counter(_TRANSIENT[c.outcome][0] for c in calls if c.outcome in _TRANSIENT)
    return " and ".join(f"{n} {noun}{'s' if n > 1 else ''}" for noun, n in errors.items())


def _shared_key(kata: Kata) -> str | None:
    """The diagnosis when two jobs sent with one idempotency key (a key made from the address)."""
    jobs: dict[str, list[int]] = {}
    for call in kata.services.ledger.calls_for(service="sendgrid", operation="send_email"):
        if call.idempotency_key is not None and call.job_id is not None:
            ids = jobs.setdefault(call.idempotency_key, [])
            if call.job_id not in ids:
                ids.append(call.job_id)
    for key, (first, second, *_) in ((k, ids) for k, ids in jobs.items() if len(ids) > 1):
        seconds = [c for c in kata.services.ledger.calls if c.job_id == second]
        what = (
            "SendGrid refused the second job's email (422 IdempotencyKeyReusedError)"
            if any(c.outcome == "key_reused" for c in seconds)
            else "SendGrid took the second job's email for a retry of the first: it answered "
            "with the first job's message id and delivered nothing"
        )
        return (
            f"send_email used the same idempotency key {key!r} for two jobs (job {first} and "
            f"job {second}, the same address in two campaigns), so {what} — derive the key from "
            f"the job and the step (e.g. 'job-{second}-send_email'), never from the address alone"
        )
    return None


def _key_reused(kata: Kata, job: Job) -> str | None:
    """The diagnosis when SendGrid refused a try of this job's email because its idempotency key
    had been used with other arguments (a body that changes between tries)."""
    calls = sorted(
        (
            c
            for c in kata.services.ledger.calls_for(service="sendgrid", operation="send_email")
            if c.job_id == job.id
        ),
        key=lambda c: c.at,
    )
    refused = next((c for c in calls if c.outcome == "key_reused"), None)
    if refused is None:
        return None
    first = next(
        (d for d in kata.services.ledger.deliveries if d.key == refused.idempotency_key), None
    )
    if first is None:  # refused only after a delivery with that key: unreachable
        return None
    changed = [
        how_it_differs(what, before, refused.args[name])
        for name, what, before in (("to", "address", first.to), ("body", "body", first.body))
        if refused.args[name] != before
    ]
    what = "a different body" if first.to == refused.args["to"] else "a different address"
    tries = f"its {_ordinal(calls.index(refused) + 1)} try"
    return (
        f"send_email_step reused the idempotency key {refused.idempotency_key!r} with {what}: "
        f"{tries} of job {job.id}'s email was refused by SendGrid (422 "
        f"IdempotencyKeyReusedError), because the email that key first delivered had other "
        f"arguments ({'; '.join(changed)}) — a key must always go with the same arguments: build "
        "the body from the job alone, with nothing that changes between tries (no attempt "
        "number, time or random part)"
    )


def _sent_elsewhere(kata: Kata, job: Job) -> str | None:
    """The diagnosis when the job's email went to another address than the job's, e.g. the
    address trimmed or lowercased."""
    for call in kata.services.ledger.calls_for(service="sendgrid", operation="send_email"):
        if call.job_id == job.id and call.subject != job.email:
            return (
                f"send_email_step sent job {job.id}'s email to {call.subject!r}, not the job's "
                f"address {job.email!r} — send to job.email exactly as stored (not trimmed, not "
                "lowercased): SendGrid judges the address, and a job whose address it refuses "
                "fails with InvalidEmailError"
            )
    return None


def expect_sent(kata: Kata, job: Job) -> None:
    """The job was not given up on, recorded the id SendGrid returned, and got one email."""
    if elsewhere := _sent_elsewhere(kata, job):
        fail(elsewhere)
    if reused := _key_reused(kata, job):
        fail(reused)
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
    if transient and calls[-1].outcome in ("ok", "replayed"):
        fail(
            f"job {job.id} was failed (last_error {job.last_error!r}) although its "
            f"{_ordinal(len(calls))} try of send_email succeeded — the MAX_ATTEMPTS-th "
            f"({MAX_ATTEMPTS}) try may succeed: fail the job only after MAX_ATTEMPTS failed "
            "tries, and record the message_id of a try that succeeded"
        )
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
        f"job {job.id} was failed after {len(calls)} tries of send_email ({_tally(calls)}), "
        f"but MAX_ATTEMPTS is {MAX_ATTEMPTS} — {advice}, up to MAX_ATTEMPTS tries of the step "
        f"in all, the last of which may succeed (last_error: {job.last_error!r})"
    )


def _ordinal(n: int) -> str:
    return {1: "1st", 2: "2nd", 3: "3rd"}.get(n, f"{n}th")


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


def expect_no_wait_in_transaction(kata: Kata) -> None:
    waits = kata.services.ledger.violations_of(ViolationKind.WAIT_IN_TRANSACTION)
    if waits:
        fail(describe_violation(waits[0]))


def _counted_from_the_request(kata: Kata, email: str) -> str | None:
    """The diagnosis when a retry came once a 429's retry_after had passed since its request was
    sent, but not since the 429 arrived."""
    calls = sorted(sends(kata, email), key=lambda c: c.at)  # the n-th started is the n-th decided
    for n, (told, retry) in enumerate(pairwise(calls), start=1):
        if told.outcome != "rate_limited":
            continue
        retry_after = kata.services.plan.decide("sendgrid", email, n).retry_after
        since_sent, since_arrived = retry.at - told.at, retry.at - (told.at + told.duration)
        if since_sent >= retry_after - RETRY_AFTER_TOLERANCE > since_arrived:
            return (
                f"send_email to {email} was retried {since_arrived:.3f} s after a 429 with "
                f"retry_after={retry_after:g} s arrived (it took {told.duration:.3f} s to "
                "arrive) — retry_after counts from when the 429 arrived, not from when the "
                "request was sent: start the wait when the RateLimitError is raised"
            )
    return None


def expect_no_violations(kata: Kata) -> None:
    """``kata.assert_no_violations()``, naming a retry_after counted from the request as such."""
    early = kata.services.ledger.violations_of(ViolationKind.RETRY_BEFORE_RETRY_AFTER)
    if early and (counted := _counted_from_the_request(kata, EMAIL)):
        fail(counted)
    kata.assert_no_violations()


# --- success --------------------------------------------------------------------------------


@graded("C", timeout=TIMEOUT)
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
            f"{delivered[0].message_id!r}), yet the message_id was {saved} in the database — "
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
    expect_no_violations(kata)


@graded("C", timeout=TIMEOUT)
async def test_no_api_call_inside_a_transaction(kata: Kata) -> None:
    # A timeout first, so that the retry path is exercised too: recording the attempt and retrying
    # inside one transaction holds the connection (and SQLite's write lock) through the backoff.
    with kata.faults(script(EMAIL, TimeoutBefore(), Succeed())):
        job = await send(kata)
        expect_no_call_in_transaction(kata)
        expect_no_wait_in_transaction(kata)
        expect_sent(kata, job)
        expect_no_violations(kata)


@graded("C", timeout=TIMEOUT)
async def test_no_backoff_wait_inside_a_transaction(kata: Kata) -> None:
    # A rate limit and a timeout: counting the attempt and then waiting in the same transaction
    # holds the connection (and SQLite's write lock) for the whole backoff, even when the API
    # itself is called outside it.
    with kata.faults(script(EMAIL, RateLimit(retry_after=0.05), TimeoutBefore(), Succeed())):
        job = await send(kata)
        expect_no_wait_in_transaction(kata)
        expect_no_call_in_transaction(kata)
        expect_sent(kata, job)
        expect_no_violations(kata)


# --- transient errors -------------------------------------------------------------------------


@graded("C", timeout=TIMEOUT)
async def test_one_rate_limit_does_not_fail_the_job(kata: Kata) -> None:
    with kata.faults(script(EMAIL, RateLimit(retry_after=0.1), Succeed())):
        job = await send(kata)
        expect_sent(kata, job)
        expect_no_violations(kata)


@graded("C", timeout=TIMEOUT)
async def test_retries_wait_at_least_retry_after(kata: Kata) -> None:
    # Growing retry_after values: a fixed sleep, or remembering only the first one, is too early.
    with kata.faults(
        script(EMAIL, RateLimit(retry_after=0.1), RateLimit(retry_after=0.25), Succeed())
    ):
        job = await send(kata)
        early = kata.services.ledger.violations_of(ViolationKind.RETRY_BEFORE_RETRY_AFTER)
        if early:
            fail(_counted_from_the_request(kata, EMAIL) or describe_violation(early[0]))
        expect_sent(kata, job)
        expect_no_violations(kata)


SLOW_429 = 0.3
"""Seconds the 429 of the next test takes to arrive: longer than the retry_after it carries."""
SLOW_429_RETRY_AFTER = 0.2


@graded("C", timeout=TIMEOUT)
async def test_retry_after_counts_from_when_the_429_arrived(kata: Kata) -> None:
    # The 429 comes back after 0.3 s and asks for 0.2 s: a wait counted from when the request was
    # sent is over before the 429 even arrives, so such a client retries at once, every run.
    slow = RateLimit(retry_after=SLOW_429_RETRY_AFTER, latency=SLOW_429)
    with kata.faults(script(EMAIL, slow, Succeed())):
        job = await send(kata)
        early = kata.services.ledger.violations_of(ViolationKind.RETRY_BEFORE_RETRY_AFTER)
        if early:
            fail(_counted_from_the_request(kata, EMAIL) or describe_violation(early[0]))
        expect_sent(kata, job)
        expect_no_violations(kata)


@graded("C", timeout=TIMEOUT)
async def test_rate_limits_are_retried_until_the_email_is_sent(kata: Kata) -> None:
    with kata.faults(
        script(EMAIL, RateLimit(retry_after=0.05), RateLimit(retry_after=0.05), Succeed())
    ):
        job = await send(kata)
        expect_sent(kata, job)
        expect_no_violations(kata)


@graded("C", timeout=TIMEOUT)
async def test_timeout_before_delivery_is_retried(kata: Kata) -> None:
    with kata.faults(script(EMAIL, TimeoutBefore(), Succeed())):
        job = await send(kata)
        expect_sent(kata, job)
        expect_no_violations(kata)


@graded("C", timeout=TIMEOUT)
async def test_timeout_after_delivery_is_retried_without_a_second_email(kata: Kata) -> None:
    # The email went out but the response was lost: only the same idempotency key makes the retry
    # answer with that message instead of delivering another.
    with kata.faults(script(EMAIL, TimeoutAfter(), Succeed())):
        job = await send(kata)
        expect_sent(kata, job)
        expect_no_violations(kata)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(RateLimit(retry_after=0.05), id="rate_limits", marks=FULL_ONLY),
        pytest.param(TimeoutBefore(), id="timeouts_before_delivery", marks=FULL_ONLY),
        pytest.param(TimeoutAfter(), id="timeouts_after_delivery"),
    ],
)
@graded("C", timeout=TIMEOUT)
async def test_the_last_allowed_try_may_succeed(kata: Kata, fault: ScriptedOutcome) -> None:
    # MAX_ATTEMPTS - 1 errors, then success: giving up a try early (3 tries, or range(1, 5)), or
    # failing the job because the counter reached MAX_ATTEMPTS although that try succeeded.
    with kata.faults(script(EMAIL, *[fault] * (MAX_ATTEMPTS - 1), Succeed())):
        job = await send(kata)
        expect_sent(kata, job)
        expect_no_violations(kata)


# --- idempotency keys -----------------------------------------------------------------------


@graded("C", timeout=2 * PATIENCE + 10)
async def test_the_same_address_in_two_campaigns_gets_two_emails(kata: Kata) -> None:
    # Two jobs for one address, in two campaigns, each claimed by its own worker: a key made from
    # the address makes SendGrid answer the second send with the first one's message (or a 422,
    # when the body differs), so one customer never hears about the second campaign.
    jobs = [await kata.running_job(EMAIL, worker=f"worker-{n}") for n in (1, 2)]
    settled = [await settle(kata, job) for job in jobs]
    if shared := _shared_key(kata):
        fail(shared)
    delivered = kata.services.ledger.deliveries_to(EMAIL)
    for job in settled:
        if job.status == JobStatus.FAILED:
            _gave_up(job, [c for c in sends(kata, EMAIL) if c.job_id == job.id])
        own = [d for d in delivered if d.job_id == job.id]
        if len(own) != 1:
            fail(
                f"{len(own)} emails were delivered for job {job.id} to {EMAIL} (the same address "
                "has a job in another campaign) — each job's email goes out exactly once"
            )
        if job.message_id != own[0].message_id:
            fail(
                f"job {job.id} recorded message_id {job.message_id!r}, but its own email has id "
                f"{own[0].message_id!r} — record what send_email returned for this job"
            )
    expect_no_violations(kata)


# --- giving up ----------------------------------------------------------------------------


#: Addresses SendGrid refuses (InvalidEmailError): a reserved domain, a doubled dot, and spaces
#: around an address that is otherwise fine (sent as stored, it is refused; trimmed, it is
#: another address).
_REFUSED = ("grace@example.invalid", "ada..lovelace@example.com", " edsger@example.com ")


@graded("C", timeout=50)
async def test_permanent_error_fails_the_job_after_exactly_one_attempt(kata: Kata) -> None:
    for email in _REFUSED:
        job = await send(kata, email, within=12.0)
        if elsewhere := _sent_elsewhere(kata, job):
            fail(elsewhere)
        calls = sends(kata, email)
        if len(calls) > 1:
            fail(_retried_permanent(email, len(calls)))
        if not calls:
            fail(_failed_without_a_try(job, email))
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
    expect_no_violations(kata)


def _failed_without_a_try(job: Job, email: str) -> str:
    refused = invalid_email_reason(email)
    verdict = (
        "SendGrid would have refused it, but only SendGrid may say so"
        if refused
        else "SendGrid accepts it"
    )
    return (
        f"job {job.id} was {job.status.value} without calling send_email for {email!r} "
        f"({verdict}; last_error {job.last_error!r}) — let the API judge the address: a local "
        "pattern rejects real addresses (an apostrophe, a long top-level domain, a +tag, "
        "uppercase); send exactly one attempt, and fail the job only on InvalidEmailError"
    )


#: Addresses SendGrid accepts that a textbook pattern (``[a-z0-9._%+-]+@[a-z0-9.-]+\.[a-z]{2,4}``
#: and its cousins) rejects: each must be sent, once, and its message id recorded.
_SENDABLE = (
    "o'brien@example.ie",
    "Ada.Lovelace@Example.COM",
    "alan.turing+news@example.com",
    "grace@hopper.technology",
    "info@xn--mnchen-3ya.de",  # münchen.de, as SendGrid takes an internationalised domain
    "l" * 64 + "@example.com",  # the longest local part an address may have
    "ken_thompson@mail.bell-labs.example.com",
)


@graded("C", timeout=TIMEOUT)
async def test_every_address_the_api_accepts_is_sent(kata: Kata) -> None:
    for email in _SENDABLE:
        job = await send(kata, email)
        if elsewhere := _sent_elsewhere(kata, job):
            fail(elsewhere)
        if not sends(kata, email):
            fail(_failed_without_a_try(job, email))
        expect_sent(kata, job)
    expect_no_violations(kata)


_ALTERNATING: list[ScriptedOutcome] = [RateLimit(retry_after=0.05), TimeoutBefore()]


@pytest.mark.parametrize(
    "faults",
    [
        pytest.param([RateLimit(retry_after=0.05)], id="rate_limits", marks=FULL_ONLY),
        pytest.param([TimeoutBefore()], id="timeouts", marks=FULL_ONLY),
        # One budget per kind of error (5 rate limits and 5 timeouts) gives up only after 9 tries.
        pytest.param(_ALTERNATING, id="rate_limits_and_timeouts_alternating"),
    ],
)
@graded("C", timeout=TIMEOUT)
async def test_persistent_transient_errors_fail_the_job_after_max_attempts(
    kata: Kata, faults: list[ScriptedOutcome]
) -> None:
    # A mix of errors runs long enough (11) that one budget per kind of error (which gives up at
    # the 5th of one kind, the 9th call) and no budget at all (which retries on to the success)
    # make different numbers of calls, and get different diagnoses.
    count = 2 * MAX_ATTEMPTS + 1 if len(faults) > 1 else MAX_ATTEMPTS + 3
    outcomes = [faults[n % len(faults)] for n in range(count)] + [Succeed()]
    with kata.faults(script(EMAIL, *outcomes)):
        # Enough rounds for the script to end in a success: retrying forever returns, and is
        # diagnosed from the number of calls instead of hanging the grader.
        job = await send(kata, rounds=len(outcomes) + 1)
        calls = sends(kata, EMAIL)
        if len(calls) > MAX_ATTEMPTS:
            fail(_uncapped(calls))
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
        expect_no_violations(kata)


# --- a job that moved on while the email was in flight --------------------------------------------


@graded("C", timeout=TIMEOUT)
async def test_recording_the_message_id_leaves_the_rest_of_the_job_alone(kata: Kata) -> None:
    # worker-1 is held inside send_email while the job moves on under it, as when its lease ran
    # out and worker-2 took the job to the next step. When worker-1's call returns, recording the
    # message id must not write back the rest of the (now stale) object it was given.
    gate = Gate("worker-1")
    with kata.serving(gate):
        job = await kata.running_job(EMAIL)
        call = asyncio.create_task(
            kata.call("send_email_step", copy_job(job), worker="worker-1", job_id=job.id)
        )
        arrival = asyncio.ensure_future(gate.arrived.wait())
        await asyncio.wait({arrival, call}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        arrival.cancel()
        if not gate.held:
            gate.opened.set()
            await call  # it returned (or raised) without sending: the tests above judge that
            return
        with acting_as("worker-2"):  # the harness, playing the worker that took the job on
            await Job.filter(id=job.id).update(worker_id="worker-2", step=Step.ANALYZE)
        moved = await kata.fresh(job)
        gate.opened.set()
        await call
        after = await kata.fresh(job)
    changed = [
        f"{name} {_shown(getattr(moved, name))} -> {_shown(getattr(after, name))}"
        for name in ("step", "worker_id", "claimed_at")
        if getattr(after, name) != getattr(moved, name)
    ]
    if changed:
        shown = ", ".join(changed)
        kata.explain([job.id], ["worker-1", "worker-2"])
        fail(
            f"while worker-1 was inside send_email for job {job.id}, worker-2 took the job on to "
            f"step analyze; when the email went out, send_email_step wrote back fields it did "
            f"not mean to change ({shown}) — saving the whole job object (job.save()) writes its "
            "stale copy over newer progress: update only what the step records, e.g. "
            "Job.filter(id=job.id).update(message_id=...)"
        )


def _shown(value: object) -> str:
    return repr(getattr(value, "value", value))
