"""Task F's jobs: the stalled jobs a test sets up (with the harness's own SQL), and what a recovery
may and may not do to one, in the candidate's words.

A stalled job is ``running`` with a ``claimed_at`` older than the lease: its worker died. Its
recovery (CONTRACT.md, Task F):

* counts the crash: ``attempts + 1``, and goes back to ``pending``, claimable again at once (or
  after a backoff of at most 30 s, as Task C's requeue);
* unless that count reaches ``MAX_ATTEMPTS``: then it is ``failed`` with a ``last_error`` (a
  poison job, which would otherwise kill every worker that takes it);
* keeps the job's progress (its step and results), and leaves ``worker_id`` and ``claimed_at``
  as they were or clears them.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..sql.models import MAX_ATTEMPTS, Job, JobStatus, Step
from ..sql.orm import utcnow
from .diagnosis import fail
from .kit import Kata

__all__ = [
    "BACKOFF_LIMIT",
    "LEASE",
    "ROUND_TRIPS",
    "STALE",
    "STALLED_AT_ONCE",
    "age",
    "as_count",
    "is_poison",
    "reap",
    "recovery_problem",
    "stalled_jobs",
    "story",
    "untouched_problem",
]

#: The lease the tests give the reaper, in seconds: claims older than this are a dead worker's.
LEASE = 60.0
#: How old a dead worker's claim is in the tests: far beyond the lease, whatever the clock does.
STALE = timedelta(minutes=10)
#: The furthest a recovered job's ``run_after`` may be moved ahead (Task C's requeue allows as
#: much).
BACKOFF_LIMIT = timedelta(seconds=30)
#: Stalled jobs of the round-trip test, by tier, and the statements they may take (every
#: statement is one round trip, BEGIN and COMMIT too): at least a hundred jobs per statement. The
#: fast tier's smaller load still takes a statement per job, or one batch of a thousand, over it.
STALLED_AT_ONCE = {"full": 5_000, "fast": 2_000}
ROUND_TRIPS = 50
#: Python's clock and the database's are read at slightly different moments.
_SLACK = timedelta(seconds=2)

#: What a recovery must leave as it was: the job's identity and progress.
KEPT = ("campaign_id", "email", "step", "message_id", "sentiment", "action_id", "created_at")
#: What a recovery may leave or clear (NULL), and nothing else.
KEPT_OR_CLEARED = ("worker_id", "claimed_at")

#: What a job at each step has recorded on its way there (a dead worker's progress).
_RESULTS: dict[Step, dict[str, str]] = {
    Step.SEND_EMAIL: {},
    Step.ANALYZE: {"message_id": "msg-of-the-dead-worker"},
    Step.TAKE_ACTION: {"message_id": "msg-of-the-dead-worker", "sentiment": "positive"},
}


async def stalled_jobs(
    kata: Kata,
    campaign_id: int,
    emails: list[str],
    *,
    ago: timedelta = STALE,
    attempts: int = 0,
    step: Step = Step.ANALYZE,
    as_jobs: bool = True,
) -> list[Job]:
    """Running jobs whose worker claimed them ``ago`` and stopped renewing (each its own worker,
    ``worker-<id>``), at ``step`` with that step's progress. ``as_jobs=False``: thousands of
    them, made without reading them back (and without naming each worker after its job): an
    empty list is returned."""
    claimed = utcnow() - ago
    fields: dict[str, Any] = {
        "status": JobStatus.RUNNING.value,
        "step": step.value,
        "attempts": attempts,
        "claimed_at": claimed,
        "updated_at": claimed,
        **_RESULTS[step],
    }
    columns = ["campaign_id", "email", "worker_id", *fields]
    jobs: list[Job] = []
    for start in range(0, len(emails), 500):
        batch = emails[start : start + 500]
        marks = ", ".join("(" + ", ".join("?" for _ in columns) + ")" for _ in batch)
        params = [
            value
            for index, email in enumerate(batch, start=start + 1)
            for value in (campaign_id, email, f"worker-{index}", *fields.values())
        ]
        result = await kata.database.run(
            f"INSERT INTO jobs ({', '.join(columns)}) VALUES {marks} RETURNING id", params
        )
        if not as_jobs:
            continue
        # Each job's worker named after it: the diagnoses say "worker-7's job 7".
        ids = [row["id"] for row in result.rows]
        named = await kata.database.run(
            "UPDATE jobs SET worker_id = 'worker-' || id "
            f"WHERE id IN ({', '.join('?' for _ in ids)}) RETURNING *",
            ids,
        )
        jobs += [Job.from_row(row) for row in named.rows]
    return sorted(jobs, key=lambda job: job.id)


async def reap(kata: Kata, lease: float = LEASE, worker: str = "reaper-1") -> int:
    """Call the candidate's reaper as ``worker``; a count that is not an int fails the test."""
    return as_count(await kata.call("recover_stalled_jobs", lease, worker=worker))


def as_count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        shown = "None (a missing return?)" if value is None else f"{value!r}"
        fail(f"recover_stalled_jobs returned {shown} — return how many jobs it took back (an int)")
    return value


def is_poison(job: Job) -> bool:
    """Whether recovering ``job`` (as it was before) is the recovery that reaches MAX_ATTEMPTS."""
    return job.attempts + 1 >= MAX_ATTEMPTS


def age(moment: datetime | None) -> str:
    """ "10 min ago", "3 s ago"."""
    if moment is None:
        return "never"
    seconds = (utcnow() - moment).total_seconds()
    if seconds >= 120:
        return f"{seconds / 60:.0f} min ago"
    return f"{seconds:.0f} s ago"


def story(job: Job, lease: float) -> str:
    """ "job 3 (running at analyze, claimed by worker-3 10 min ago; the lease is 60 s)"."""
    return (
        f"job {job.id} ({job.status.value} at {job.step.value}, claimed by {job.worker_id} "
        f"{age(job.claimed_at)}; the lease is {lease:g} s)"
    )


def _shown(value: Any) -> str:
    value = getattr(value, "value", value)
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return repr(value)


def recovery_problem(before: Job, after: Job, lease: float) -> str | None:
    """What is wrong with ``after``, the recovery of the stalled job ``before``; None if it is
    right."""
    told = story(before, lease)
    if after.status is JobStatus.RUNNING:
        return (
            f"{told} was left running — its worker died: a running job whose claimed_at is "
            "older than the lease goes back to the queue (pending): WHERE status = 'running' "
            "AND claimed_at < now - timedelta(seconds=lease_seconds)"
        )
    crashes = before.attempts + 1
    if is_poison(before):
        if after.status is JobStatus.PENDING:
            return (
                f"{told} went back to the queue with attempts {after.attempts}, though this "
                f"recovery counts its worker's death as try {crashes} of the step (attempts was "
                f"{before.attempts}): a poison job that kills every worker that takes it goes "
                "round the queue forever — the recovery that brings attempts to MAX_ATTEMPTS "
                f"({MAX_ATTEMPTS}) fails the job with last_error instead"
            )
        if after.status is not JobStatus.FAILED:
            return f"{told} was set {after.status.value} — a poison job is failed, with last_error"
        if not after.last_error:
            return (
                f"{told} was failed as a poison job (attempts {before.attempts} + this crash = "
                f"MAX_ATTEMPTS) with no last_error — say why it failed (e.g. 'its worker died "
                f"{MAX_ATTEMPTS} times at step {before.step.value}'): an operator reads it"
            )
    else:
        if after.status is JobStatus.FAILED:
            left = MAX_ATTEMPTS - crashes
            return (
                f"{told} was failed although this was its worker's death number {crashes} at "
                f"this step (attempts {before.attempts}): {left} tr{'ies' if left > 1 else 'y'} "
                f"of MAX_ATTEMPTS ({MAX_ATTEMPTS}) left — only the recovery that brings attempts "
                "to MAX_ATTEMPTS fails the job; this one goes back to the queue (pending, "
                "attempts + 1)"
            )
        if after.status is not JobStatus.PENDING:
            return (
                f"{told} was set {after.status.value} — a stalled job goes back to the queue "
                "(pending)"
            )
        if after.attempts == before.attempts:
            return (
                f"{told} went back to the queue with attempts still {after.attempts} — count the "
                "crash (attempts + 1: a worker that died spent one try of the step, as in Task "
                "C), or a job that kills every worker that takes it goes round forever"
            )
        if after.attempts != before.attempts + 1:
            reset = (
                " (a recovery that resets the count)" if after.attempts < before.attempts else ""
            )
            return (
                f"{told} went back to the queue with attempts {after.attempts}, was "
                f"{before.attempts}{reset} — one recovery adds one to attempts: attempts + 1"
            )
        if after.run_after > utcnow() + BACKOFF_LIMIT + _SLACK:
            ahead = (after.run_after - utcnow()).total_seconds()
            return (
                f"{told} went back to the queue with run_after {ahead:.0f} s away — a recovered "
                "job is claimable again at once (or after a backoff of at most 30 s)"
            )
    for name in KEPT:
        if getattr(after, name) != getattr(before, name):
            return (
                f"{told}: its recovery changed {name} from {_shown(getattr(before, name))} to "
                f"{_shown(getattr(after, name))} — a recovered job keeps its progress (step, "
                "message_id, sentiment, action_id): the next worker continues where the dead one "
                "stopped, and its idempotency keys find what was already done"
            )
    for name in KEPT_OR_CLEARED:
        value = getattr(after, name)
        if value is not None and value != getattr(before, name):
            return (
                f"{told}: its recovery set {name} to {_shown(value)} (was "
                f"{_shown(getattr(before, name))}) — a recovery leaves worker_id and claimed_at "
                "as they were, or clears them (NULL): the next claim records its own"
            )
    return None


#: What "nothing else changed" compares: every field but updated_at (a write may touch it).
_COMPARED = (*KEPT, *KEPT_OR_CLEARED, "status", "attempts", "last_error", "run_after")


def untouched_problem(before: Job, after: Job, why: str, lease: float) -> str | None:
    """What the reaper changed in ``before``, a job it had to leave alone (``why``: because it
    is not a stalled job)."""
    changed = [
        f"{name} {_shown(getattr(before, name))} → {_shown(getattr(after, name))}"
        for name in _COMPARED
        if getattr(after, name) != getattr(before, name)
    ]
    if not changed:
        return None
    return (
        f"recover_stalled_jobs changed job {before.id} ({', '.join(changed)}), {why} — only a "
        f"running job whose claimed_at is older than the lease ({lease:g} s) is stalled: "
        "WHERE status = 'running' AND claimed_at < now - lease"
    )
