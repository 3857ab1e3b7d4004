"""The parts of the campaign worker that are not on fire: claim, bulk create, send, retries,
analyze, act.

Every incident module imports these, so that its file shows the code on the incident's path and
nothing else. They are written as the production service would write them, and they are correct:
retries honour ``retry_after``, the CRM call has a stable idempotency key, and a step advances
with compare-and-set (``UPDATE ... WHERE step = <the step we ran>``), so that two workers on one
job advance it once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from typing import TypeVar

from harness import (
    MAX_ATTEMPTS,
    InvalidEmailError,
    Job,
    JobStatus,
    RateLimitError,
    ServiceError,
    ServiceTimeoutError,
    Step,
    analyze_sentiment,
    db,
    execute_sql,
    get_reply,
    route_customer,
    send_email,
    transaction,
    utcnow,
)
from harness.sql.queue import claim_params, claim_sql

__all__ = [
    "GaveUp",
    "SendStep",
    "advance",
    "claim_next_job",
    "create_campaign_jobs",
    "email_body",
    "fail_job",
    "run_current_step",
    "send_and_record",
    "send_email_step",
    "step_key",
    "with_retries",
]

T = TypeVar("T")
SendStep = Callable[[Job], Awaitable[None]]

#: Rows per INSERT: 2,000 rows x 2 parameters stays under every driver's parameter limit.
INSERT_BATCH = 2000
BACKOFF_BASE = 0.02  # seconds, doubled per attempt
BACKOFF_CAP = 2.0


async def claim_next_job(worker_id: str) -> Job | None:
    """Atomically claim the oldest claimable job: the harness's own claim (one statement; SKIP
    LOCKED on PostgreSQL), declared once in ``harness.sql.queue``."""
    rows = await execute_sql(claim_sql(db.dialect), claim_params(worker_id, utcnow()))
    return Job.from_row(rows[0]) if rows else None


async def create_campaign_jobs(campaign_id: int, customer_emails: list[str]) -> int:
    """One pending job per distinct address, in a few multi-row INSERTs, all or nothing."""
    emails = list(dict.fromkeys(customer_emails))
    created = 0
    async with transaction():
        for start in range(0, len(emails), INSERT_BATCH):
            batch = emails[start : start + INSERT_BATCH]
            values = ", ".join("(?, ?)" for _ in batch)
            params = [value for email in batch for value in (campaign_id, email)]
            rows = await execute_sql(
                f"INSERT INTO jobs (campaign_id, email) VALUES {values} "
                "ON CONFLICT (campaign_id, email) DO NOTHING RETURNING id",
                params,
            )
            created += len(rows)
    return created


class GaveUp(Exception):
    """A transient error outlasted ``MAX_ATTEMPTS`` tries."""

    def __init__(self, attempts: int, error: ServiceError) -> None:
        super().__init__(f"gave up after {attempts} attempts: {type(error).__name__}: {error}")
        self.attempts = attempts


async def with_retries(call: Callable[[], Awaitable[T]]) -> T:
    """Retry 429s and timeouts with jittered exponential backoff, never before ``retry_after``."""
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            return await call()
        except (RateLimitError, ServiceTimeoutError) as error:
            if attempt == MAX_ATTEMPTS:
                raise GaveUp(attempt, error) from error
            delay = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
            if isinstance(error, RateLimitError):
                delay = max(delay, error.retry_after)
            await asyncio.sleep(delay * (1 + random.random() / 4))
    raise AssertionError("unreachable")


def step_key(job: Job, step: Step) -> str:
    """The idempotency key of one step of one job: the same on every attempt and every worker."""
    return f"job-{job.id}-{step.value}"


def email_body(job: Job) -> str:
    name = job.email.split("@")[0]
    return f"Hi {name}, we'd love to hear what you think of campaign {job.campaign_id}."


async def fail_job(job: Job, error: str, attempts: int) -> None:
    """Mark a job that has not finished as failed, with the reason."""
    await execute_sql(
        "UPDATE jobs SET status = 'failed', last_error = ?, attempts = ? "
        "WHERE id = ? AND status IN ('pending', 'running')",
        [error, attempts, job.id],
    )
    job.status, job.last_error, job.attempts = JobStatus.FAILED, error, attempts


async def send_email_step(job: Job) -> None:
    """Send the campaign email outside any transaction, with a key stable across retries, and
    record its message id; fail the job on a permanent error or when retries run out."""
    key = step_key(job, Step.SEND_EMAIL)
    await send_and_record(job, lambda: send_email(job.email, email_body(job), idempotency_key=key))


async def send_and_record(job: Job, request: Callable[[], Awaitable[str]]) -> None:
    """Make ``request`` (a send_email call) with retries and record the message id it returns;
    fail the job on a permanent error or when retries run out. Where it runs (in a transaction
    or not) and how ``request`` keys the email are the caller's."""
    try:
        message_id = await with_retries(request)
    except InvalidEmailError as error:
        await fail_job(job, f"InvalidEmailError: {error}", attempts=1)
        return
    except GaveUp as error:
        await fail_job(job, str(error), attempts=error.attempts)
        return
    await Job.filter(id=job.id).update(message_id=message_id)
    job.message_id = message_id


async def advance(job: Job, to: Step, **fields: object) -> bool:
    """Move the job from the step it is at to ``to`` (once: the UPDATE re-checks the step)."""
    status = JobStatus.COMPLETED if to == Step.DONE else JobStatus.RUNNING
    changed = await Job.filter(id=job.id, step=job.step, status=JobStatus.RUNNING).update(
        step=to, status=status, **fields
    )
    if changed:
        job.step, job.status = to, status
    return changed == 1


async def run_current_step(job: Job, send: SendStep) -> None:
    """Run the job's current step with ``send`` as the email step, then advance it."""
    fresh = await Job.filter(id=job.id).first()
    if fresh is None or fresh.status != JobStatus.RUNNING:
        return
    try:
        await _run(fresh, send)
    except GaveUp as error:
        await fail_job(fresh, f"{fresh.step.value}: {error}", error.attempts)
    except ServiceError as error:  # a 400 or a 404: retrying cannot help
        await fail_job(fresh, f"{fresh.step.value}: {type(error).__name__}: {error}", 1)
    job.__dict__.update(fresh.__dict__)


async def _run(job: Job, send: SendStep) -> None:
    if job.step == Step.SEND_EMAIL:
        if job.message_id is None:
            await send(job)
            if job.status != JobStatus.RUNNING:
                return
        await advance(job, Step.ANALYZE)
    elif job.step == Step.ANALYZE:
        message_id = job.message_id
        assert message_id is not None, f"job {job.id} reached analyze without a message id"
        reply = await with_retries(lambda: get_reply(message_id))
        sentiment = await with_retries(lambda: analyze_sentiment(reply))
        await advance(job, Step.TAKE_ACTION, sentiment=sentiment)
    elif job.step == Step.TAKE_ACTION:
        decided = job.sentiment
        assert decided is not None, f"job {job.id} reached take_action without a sentiment"
        action_id = await with_retries(
            lambda: route_customer(
                job.email, decided, idempotency_key=step_key(job, Step.TAKE_ACTION)
            )
        )
        await advance(job, Step.DONE, action_id=action_id)
    elif job.step == Step.DONE:
        await Job.filter(id=job.id, status=JobStatus.RUNNING).update(status=JobStatus.COMPLETED)
