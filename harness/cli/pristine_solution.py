"""Your solution. This is the only file you edit.

Run `python -m harness dev` and keep it open: every save re-grades this file and redraws the
board. `python -m harness hint A` when you are stuck. Every name you may import and every rule
the grader holds you to are in CONTRACT.md; the README ("Quick reference") shows how to use the
harness. Everything you need is importable from `harness`.

Twenty workers run this code at once. External APIs fail. Workers crash. Make it correct.
"""

from __future__ import annotations

from harness import (  # noqa: F401 - all here so that you don't have to look them up
    MAX_ATTEMPTS,
    SEND_RATE_PER_SECOND,
    InvalidEmailError,
    Job,
    JobStatus,
    MessageNotFoundError,
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


async def claim_next_job(worker_id: str) -> Job | None:
    """Task A — claim the claimable job with the lowest id for `worker_id`.

    A job is claimable when its status is `pending` and its `run_after` has been reached, in
    any campaign. Claiming sets it `running` with `worker_id` and `claimed_at` (now: `utcnow()`,
    timezone-aware UTC) recorded, and returns it. Return None when nothing is claimable.

    The challenge: 20 workers call this at the same moment. Reading a pending job and then
    marking it running are two steps; between them another worker can read the same job.

    The grader checks: an empty queue gives None; only pending, due jobs are claimed; a lone
    worker claims in id order (ORDER BY id); the write re-checks the whole claimable condition,
    status and run_after (the grader changes the row between your read and your write); 20
    concurrent workers (and several processes) claim thousands of jobs with every job claimed
    exactly once and none left behind, over several trials; a worker never gives up (returns
    None) while claimable jobs remain.
    """
    raise NotImplementedError("Task A: claim_next_job")


async def create_campaign_jobs(campaign_id: int, customer_emails: list[str]) -> int:
    """Task B — create one pending `send_email` job per distinct address; return how many.

    The challenge: 50,000 addresses. Every statement is a network round trip (the SQLite
    backend simulates 1 ms each), and the ORM has no bulk create.

    The grader checks: the right rows and fields, each address stored exactly as given;
    50,000 addresses within 250 round trips (every statement counts; counted, not timed; your
    function is stopped the moment it goes over) and a generous time limit; at most 65,535
    parameters in one statement, on both backends; all or nothing (a row the schema rejects
    part-way leaves no jobs, and the error reaches the caller); running it again creates
    nothing and returns 0; an exact duplicate in the input counts once; an empty list creates
    nothing and returns 0.
    """
    raise NotImplementedError("Task B: create_campaign_jobs")


async def send_email_step(job: Job) -> None:
    """Task C — send the job's email and record the `message_id` on the job.

    The challenge: `send_email` fails. `RateLimitError` and `ServiceTimeoutError` are transient
    (retry — no sooner than `retry_after`, counted from when the 429 arrived; a timeout may
    already have delivered); `InvalidEmailError` is permanent (fail the job now, never retry
    it). Retry in the call (`await asyncio.sleep`, never `time.sleep`), or return the job to
    the queue (`pending`, `attempts` + 1, `run_after` at most 30 s in the future). One budget
    per step: after `MAX_ATTEMPTS` tries in all, whatever the errors, in one call or across
    calls (in the queue style `attempts` carries the count), the job is `failed` with
    `last_error`. The body is yours to write, built from the job alone.

    The grader checks: success records the message id; each transient error is retried and
    ends in exactly one delivered email; `retry_after` is honoured; the MAX_ATTEMPTS-th try may
    succeed; persistent transient errors end in `failed` after at most MAX_ATTEMPTS tries; a
    permanent error fails the job after exactly one attempt, with `last_error`; idempotency
    keys per job and step (never the address alone, never per attempt), always with the same
    arguments (the same body on every try); no API call and no backoff wait while you hold a
    transaction; backoff waits up to 20 s per step pass.
    """
    raise NotImplementedError("Task C: send_email_step")


async def process_job(job: Job) -> None:
    """Task D — run the job's current step, then advance it to the next step.

    send_email -> analyze (get_reply + analyze_sentiment) -> take_action (route_customer)
    -> done, at which point the job is `completed`.

    The challenge: the same job may be processed twice — a stale copy, two workers at once, or
    again after a worker crashed half-way (the harness raises `WorkerCrashed`, a
    `BaseException` you must never catch, and later returns the job to the queue). Each side
    effect (email delivered, CRM action) must happen exactly once per job, and the step must
    advance exactly once: advance with a compare-and-set on the step and the status. Every API
    call follows Task C's rules; `MessageNotFoundError` is permanent.

    The grader checks: a full walk to `completed`; the same stale job object processed twice;
    two workers on one job at once; a worker paused mid-step cannot undo newer progress, nor
    touch a job failed, completed or returned to the queue meanwhile; a crash injected at every
    point of every step (a worker that swallows it and carries on fails); every fault (429,
    timeouts, permanent errors, MAX_ATTEMPTS of them) on every API call of every step, each
    step with its own budget; no `ServiceError` escapes; one address in two campaigns; random
    fault plans and crash points, with every job ending with exactly one email, one sentiment
    and one CRM action.
    """
    raise NotImplementedError("Task D: process_job")


# --- Stretch tasks: optional, for when A to D pass early. Leave them as they are if you like:
# --- a stub here is "not started", and "every task passes" means A to E.


async def recover_stalled_jobs(lease_seconds: float) -> int:
    """Task F (stretch) — return dead workers' jobs to the queue; return how many it took back.

    A live worker renews its claim (`claimed_at`) while it works, so a `running` job whose
    `claimed_at` is older than `lease_seconds` (`utcnow() - timedelta(seconds=lease_seconds)`)
    belonged to a worker that died. Return it to `pending`, counting the crash (`attempts` + 1)
    and keeping its step and results; the recovery that brings `attempts` to `MAX_ATTEMPTS`
    fails the job with `last_error` instead (a poison job). Return how many jobs this call
    changed.

    The challenge: the worker may be slow, not dead. Between your read and your write it can
    renew its claim or finish the job, and another reaper can run at the same moment as yours.
    And a job that kills every worker that takes it must not go round the queue forever.

    The grader checks: only running jobs with a claim older than the lease change (by
    `claimed_at`, not `updated_at`; the lease you are given, in seconds), in every campaign;
    pending, completed and failed jobs and live claims stay as they are; a recovered job keeps
    its progress and is claimable at once; the poison job is failed at its MAX_ATTEMPTS-th
    crash, not before and not after; the count is what changed, not what you read; the write
    re-checks the claim it read (the grader renews the claim, completes the job or has it taken
    over between your read and your write, and holds a renewal's row lock while your write
    waits); two reapers at once recover and count each job once; 5,000 stalled jobs within 50
    round trips.
    """
    raise NotImplementedError("Task F: recover_stalled_jobs")


async def reserve_send_slot(worker_id: str) -> None:
    """Task G (stretch) — return when this worker may send one email.

    SendGrid allows `SEND_RATE_PER_SECOND` sends a second for the whole account, and answers
    429 beyond it. Every worker calls this before each send; the harness sends as soon as it
    returns. Keep the account's state in the database, in the tables the harness provides:
    `send_rate` (one row: `tokens` at `refilled_at`, `next_send_at`, `paused_until`, `version`)
    or `send_slots` (one row per send, `slot` unique); times are UNIX seconds (`time.time()`).
    Give each send its own moment, `1 / SEND_RATE_PER_SECOND` after the one before (at most 2
    at once), and wait for it outside any transaction.

    The challenge: twenty workers in several processes share the one rate. A count kept in
    the process is one per process; two workers that read the same state must not both take
    the same moment; and a worker whose moment is far off must neither poll nor hold a lock
    while it waits.

    The grader checks: at most 2 sends at once and the rate after that, counted from moments
    it knows; no more than 2 429s in a drain; one rate for two loads of your file (each with
    its own globals) and, in the full tier, four OS processes; an account another process
    already booked taken as it is (never reset); eight workers paused after reading the same
    state still get a moment each; a lone waiting worker makes at most 6 statements (no
    polling); a 429 recorded in `paused_until` pauses every worker until then; no transaction
    or lock held across the wait or the send; no reservation waits over 5 s; the drain in four
    processes reaches 90% of the rate.
    """
    raise NotImplementedError("Task G: reserve_send_slot")
