"""Every rule on every write path: the table of (task, write, change under it, step) cells.

A worker that read a job writes it once its API call returns, along one of five paths: it
records the step's result, advances the job, returns it to the queue after a transient error
(or retries in the call), fails it after a permanent error, or fails it after its last try.
While it was inside the call the row may have changed under it: another worker failed it,
completed it, the queue took it back, or another worker moved it one or two steps ahead. The
rule is one for every path (CONTRACT.md, "a job that has left running or moved on"): the
worker's write changes neither the job's status nor its step, nor the results newer progress
recorded.

The cells are generated from the tables below, so that no combination is forgotten; a
combination that cannot happen is listed in ``NOT_APPLICABLE`` with the reason. Each cell is one
choreography, the same every run: the worker is held in its first API call of the step (a
``Gate``), the row is changed under it, the call answers as the path needs, and the row is
compared with what it was before the worker's write.

    python -c "from harness.grading.write_paths import describe; print(describe())"
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from ..sql.models import MAX_ATTEMPTS, Job, JobStatus, Step
from ..sql.orm import utcnow
from ..sql.sqlparams import live_words, outer_where
from ..world.faults import RateLimit, ScriptedOutcome, Succeed
from ..world.services import classify_sentiment, reply_for
from .kit import Kata
from .step_faults import GET_REPLY, ROUTE_CUSTOMER, SEND_EMAIL, ApiCall, script_call

__all__ = [
    "CELLS",
    "NOT_APPLICABLE",
    "Cell",
    "Change",
    "Write",
    "change_row",
    "describe",
    "prepare",
    "writes_of",
]


class Write(StrEnum):
    """What the worker's code writes when its call returns."""

    RECORD = "record the result"  # Task C: the message id
    ADVANCE = "advance"  # Task D: record the step's result and move to the next step
    REQUEUE = "return to the queue (or retry in the call)"
    FAIL_PERMANENT = "fail after a permanent error"
    FAIL_EXHAUSTED = "fail after the last try"


class Change(StrEnum):
    """How the row changed while the worker was inside its call."""

    FAILED = "failed"
    COMPLETED = "completed"
    RETURNED = "returned-to-the-queue"
    AHEAD_ONE = "moved-one-step-ahead"
    AHEAD_TWO = "moved-two-steps-ahead"
    CLAIMED = "claimed-by-another-worker"


_ORDER = list(Step)
#: The API call a worker makes first at each step: where it is held.
FIRST_CALL = {
    Step.SEND_EMAIL: SEND_EMAIL,
    Step.ANALYZE: GET_REPLY,
    Step.TAKE_ACTION: ROUTE_CUSTOMER,
}
#: The function whose writes each task grades, and the writes it can make.
FUNCTION = {"C": "send_email_step", "D": "process_job"}
WRITES = {
    "C": (Write.RECORD, Write.REQUEUE, Write.FAIL_PERMANENT, Write.FAIL_EXHAUSTED),
    "D": (Write.ADVANCE, Write.REQUEUE, Write.FAIL_PERMANENT, Write.FAIL_EXHAUSTED),
}
#: The steps each task's writes are graded at. Task C is send_email alone. Task D's advance is
#: graded at every step; its requeue and failures at analyze, since at send_email they are the
#: writes of Task C's function, which most process_job call (and which C's own cells grade).
STEPS = {
    ("C", Write.RECORD): (Step.SEND_EMAIL,),
    ("C", Write.REQUEUE): (Step.SEND_EMAIL,),
    ("C", Write.FAIL_PERMANENT): (Step.SEND_EMAIL,),
    ("C", Write.FAIL_EXHAUSTED): (Step.SEND_EMAIL,),
    ("D", Write.ADVANCE): (Step.SEND_EMAIL, Step.ANALYZE, Step.TAKE_ACTION),
    ("D", Write.REQUEUE): (Step.ANALYZE,),
    ("D", Write.FAIL_PERMANENT): (Step.ANALYZE,),
    ("D", Write.FAIL_EXHAUSTED): (Step.ANALYZE,),
}

_PERMANENT_IS_A_FACT = (
    "a permanent error is a fact of the job's data (an address SendGrid rejects, a message never "
    "sent): no worker can have got past the step that meets it"
)
_PAST_DONE = "that many steps ahead of this step is past done: the 'completed' cell"
#: (write, change, step or None for every step) -> why the cell is not graded.
NOT_APPLICABLE: dict[tuple[Write | None, Change, Step | None], str] = {
    (None, Change.CLAIMED, None): (
        "the contract asks for no fencing: a worker whose claim expired and was taken over may "
        "still write while the job is running at its step (real queues fence it; the grader "
        "gives that as advice: test_a_worker_whose_claim_was_taken_over_is_noted_when_it_still_"
        "writes)"
    ),
    (Write.FAIL_PERMANENT, Change.AHEAD_ONE, None): _PERMANENT_IS_A_FACT,
    (Write.FAIL_PERMANENT, Change.AHEAD_TWO, None): _PERMANENT_IS_A_FACT,
    (Write.FAIL_PERMANENT, Change.COMPLETED, None): _PERMANENT_IS_A_FACT,
    (None, Change.AHEAD_ONE, Step.TAKE_ACTION): _PAST_DONE,
    (None, Change.AHEAD_TWO, Step.ANALYZE): _PAST_DONE,
    (None, Change.AHEAD_TWO, Step.TAKE_ACTION): _PAST_DONE,
}

#: The cells graded in the fast tier: every write and every change at least once per task (the
#: rest in the full tier).
FAST = {
    ("C", Write.RECORD, Change.COMPLETED, Step.SEND_EMAIL),
    ("C", Write.REQUEUE, Change.AHEAD_TWO, Step.SEND_EMAIL),
    ("C", Write.FAIL_EXHAUSTED, Change.RETURNED, Step.SEND_EMAIL),
    ("C", Write.FAIL_PERMANENT, Change.FAILED, Step.SEND_EMAIL),
    ("C", Write.RECORD, Change.AHEAD_ONE, Step.SEND_EMAIL),
    *(("D", Write.ADVANCE, change, step) for change in Change for step in _ORDER[:3]),
    ("D", Write.REQUEUE, Change.COMPLETED, Step.ANALYZE),
    ("D", Write.FAIL_EXHAUSTED, Change.AHEAD_ONE, Step.ANALYZE),
    ("D", Write.FAIL_PERMANENT, Change.RETURNED, Step.ANALYZE),
}


@dataclass(frozen=True)
class Cell:
    task: str
    write: Write
    change: Change
    step: Step

    @property
    def id(self) -> str:
        return f"{self.write.name.lower().replace('_', '-')}-at-{self.step.value}-{self.change}"

    @property
    def fast(self) -> bool:
        return (self.task, self.write, self.change, self.step) in FAST

    @property
    def call(self) -> ApiCall:
        return FIRST_CALL[self.step]


def not_applicable(write: Write, change: Change, step: Step) -> str | None:
    for (w, c, s), why in NOT_APPLICABLE.items():
        if c is change and w in (None, write) and s in (None, step):
            return why
    return None


def _cells() -> Iterator[Cell]:
    for task, writes in WRITES.items():
        for write in writes:
            for step in STEPS[(task, write)]:
                for change in Change:
                    if not_applicable(write, change, step) is None:
                        yield Cell(task, write, change, step)


CELLS = tuple(_cells())


def describe() -> str:
    """The matrix as text: every cell graded, and every one left out with its reason."""
    lines = []
    for task, writes in WRITES.items():
        lines.append(f"Task {task} ({FUNCTION[task]}):")
        for write in writes:
            for step in STEPS[(task, write)]:
                for change in Change:
                    why = not_applicable(write, change, step)
                    cell = Cell(task, write, change, step)
                    tier = "fast" if cell.fast else "full"
                    shown = f"  {write} at {step.value}, the job {change}: "
                    lines.append(shown + (f"not graded — {why}" if why else f"graded ({tier})"))
    return "\n".join(lines)


# --- the choreography ----------------------------------------------------------------------------

#: The address SendGrid rejects (its domain cannot receive mail): a permanent error at once.
INVALID_ADDRESS = "grace@example.invalid"
#: A message id SendGrid never issued: get_reply answers 404, a permanent error.
NEVER_SENT = "msg-never-sent"


def job_options(cell: Cell) -> dict[str, str]:
    """What ``job_at_step`` needs so that the cell's call meets a permanent error."""
    if cell.write is not Write.FAIL_PERMANENT:
        return {}
    if cell.step is Step.SEND_EMAIL:
        return {"email": INVALID_ADDRESS}
    return {"message_id": NEVER_SENT}


async def prepare(kata: Kata, cell: Cell, job: Job) -> None:
    """Script the call the worker is held in, so that its answer sends the worker down the
    cell's write path."""
    outcomes: list[ScriptedOutcome]
    if cell.write is Write.REQUEUE:
        outcomes = [RateLimit(retry_after=0.2), Succeed()]
    elif cell.write is Write.FAIL_EXHAUSTED:
        # One try left in the queue style; every try fails in the retry-in-the-call style.
        await Job.filter(id=job.id).update(attempts=MAX_ATTEMPTS - 1)
        outcomes = [RateLimit(retry_after=0.05)] * (MAX_ATTEMPTS + 3)
    else:
        return
    script_call(kata, cell.call, job, outcomes)


async def change_row(kata: Kata, cell: Cell, job: Job) -> str:
    """Change ``job`` as another worker (or the queue) would while the worker is in its call;
    what happened, in words."""
    running = Job.filter(id=job.id, status=JobStatus.RUNNING)
    if cell.change is Change.FAILED:
        error = f"{job.step.value}: RateLimitError (still failing after {MAX_ATTEMPTS} tries)"
        await running.update(status=JobStatus.FAILED, last_error=error)
        return f"worker-2 failed it (last_error {error!r})"
    if cell.change is Change.COMPLETED:
        await running.update(status=JobStatus.COMPLETED, step=Step.DONE, **_results(kata, job))
        return "worker-2 completed it"
    if cell.change is Change.RETURNED:
        later = utcnow() + timedelta(seconds=20)
        await running.update(status=JobStatus.PENDING, attempts=job.attempts + 1, run_after=later)
        return (
            "it went back to the queue to be retried (pending, attempts + 1, run_after 20 s ahead)"
        )
    ahead = 1 if cell.change is Change.AHEAD_ONE else 2
    step = _ORDER[_ORDER.index(job.step) + ahead]
    await kata.expire_claim(job.id, job.worker_id)
    await kata.claim_for(job.id, "worker-2")
    await Job.filter(id=job.id).update(step=step, attempts=0, **_results(kata, job, upto=step))
    return (
        f"its claim expired, worker-2 claimed it and took it {ahead} step{'s' * (ahead > 1)} "
        f"ahead to {step.value} (still running)"
    )


def _results(kata: Kata, job: Job, upto: Step = Step.DONE) -> dict[str, object]:
    """What a worker that took ``job`` to ``upto`` has recorded on the way."""
    recorded: dict[str, object] = {}
    reached = _ORDER.index(upto)
    if reached > _ORDER.index(Step.SEND_EMAIL) and job.message_id is None:
        recorded["message_id"] = f"msg-worker-2-{job.id}"
    if reached > _ORDER.index(Step.ANALYZE) and job.sentiment is None:
        recorded["sentiment"] = classify_sentiment(reply_for(kata.services.plan.seed, job.email))
    if reached > _ORDER.index(Step.TAKE_ACTION) and job.action_id is None:
        recorded["action_id"] = f"act-worker-2-{job.id}"
    return recorded


# --- what the worker wrote -----------------------------------------------------------------------


@dataclass
class JobWrites:
    """The UPDATEs of jobs that ``worker`` made and that changed a row."""

    worker: str
    statements: list[str] = dataclasses.field(default_factory=list)

    def observe(self, sent: float, caller: str, sql: str, params: object, *rest: object) -> None:
        rowcount = rest[1] if len(rest) > 1 else None
        words = live_words(sql)
        if caller == self.worker and words[:2] == ["UPDATE", "JOBS"] and rowcount:
            self.statements.append(" ".join(sql.split()))

    def mechanism(self) -> str:
        """How the write that changed the job was guarded, read from its statement: words for a
        diagnosis the behaviour already gave, never a verdict."""
        if not self.statements:
            return "its write"
        words = live_words(self.statements[-1])
        where = outer_where(words)
        sets = words[words.index("SET") + 1 : words.index("WHERE")] if "WHERE" in words else []
        if {"EMAIL", "CAMPAIGN_ID", "CREATED_AT"} <= set(sets):
            return "saving the whole job object (job.save()), which writes every field back,"
        checks_step, checks_status = "STEP" in where, "STATUS" in where
        if checks_step and not checks_status:
            return "a compare-and-set on the step but not the status"
        if checks_status and not checks_step:
            return "a compare-and-set on the status but not the step"
        if not checks_step and not checks_status:
            return "a write that checks neither the step nor the status"
        return "its write"


@contextmanager
def writes_of(kata: Kata, worker: str) -> Iterator[JobWrites]:
    seen = JobWrites(worker)
    kata.database.observers.append(seen.observe)
    try:
        yield seen
    finally:
        kata.database.observers.remove(seen.observe)
