"""Tasks C and D — every write a worker makes after its API call, against every way the row can
change under it while it waits: one choreographed test per cell of ``write_paths.CELLS``.

A worker that read a job at a step is held in that step's first API call; the job is failed,
completed, returned to the queue or moved ahead by another worker; the call then answers so that
the worker records, advances, requeues or fails. Whatever it writes, the job's status and step
stay as the other worker left them, and so do the results newer progress recorded.
"""

from __future__ import annotations

import pytest

from harness.sql.models import MAX_ATTEMPTS, Job, Step

from .choreography import Gate, paused_in_first_call
from .diagnosis import fail
from .kit import FULL_ONLY, Kata, graded
from .step_faults import job_at_step
from .write_paths import (
    CELLS,
    FUNCTION,
    Cell,
    Write,
    change_row,
    job_options,
    prepare,
    writes_of,
)

#: The result each step records: the worker may record its own step's (the same id, when its
#: idempotency key is right), never touch a later step's.
_RESULT_OF = {
    Step.SEND_EMAIL: "message_id",
    Step.ANALYZE: "sentiment",
    Step.TAKE_ACTION: "action_id",
}


def _cells(task: str) -> list[object]:
    return [
        pytest.param(cell, id=cell.id, marks=() if cell.fast else FULL_ONLY)
        for cell in CELLS
        if cell.task == task
    ]


def _answer(cell: Cell) -> str:
    call = cell.call.operation
    return {
        Write.RECORD: f"{call} succeeded",
        Write.ADVANCE: f"{call} succeeded",
        Write.REQUEUE: f"{call} answered 429 (retry_after 0.2 s)",
        Write.FAIL_PERMANENT: f"{call} answered a permanent error",
        Write.FAIL_EXHAUSTED: (
            f"every try of {call} answered 429 (the job's attempts said {MAX_ATTEMPTS - 1}: one "
            "try left)"
        ),
    }[cell.write]


async def _grade(kata: Kata, cell: Cell) -> None:
    gate = Gate("worker-1")
    with kata.serving(gate):
        job = await job_at_step(kata, cell.step, **job_options(cell))
        await prepare(kata, cell, job)
        job = await kata.fresh(job)
        function = FUNCTION[cell.task]
        async with paused_in_first_call(kata, job, "worker-1", gate=gate, function=function) as (
            paused
        ):
            if not paused.held:
                # It returned (or raised) without an API call at this step: an error is this
                # test's verdict (a stub is "not started"); the other tests judge the rest.
                await paused.resume()
                return
            what = await change_row(kata, cell, job)
            left = await kata.fresh(job)
            with writes_of(kata, "worker-1") as writes:
                await paused.resume()
            after = await kata.fresh(job)
    _judge(cell, job, paused.held or cell.call.operation, what, left, after, writes.mechanism())


def _judge(
    cell: Cell, job: Job, held: str, what: str, left: Job, after: Job, mechanism: str
) -> None:
    harm = []
    if (after.status, after.step) != (left.status, left.step):
        harm.append(
            f"changed the job from {left.status.value} at {left.step.value} to "
            f"{after.status.value} at {after.step.value}"
        )
    for field in _RESULT_OF.values():
        if field == _RESULT_OF[cell.step]:
            continue
        if getattr(left, field) is not None and getattr(after, field) != getattr(left, field):
            harm.append(f"set its {field} {getattr(left, field)!r} to {getattr(after, field)!r}")
    if not harm:
        return
    function = FUNCTION[cell.task]
    fail(
        f"{mechanism} in {function}: worker-1 read job {job.id} at step {cell.step.value} "
        f"(running) and was inside {held} when {what}; then {_answer(cell)}, and worker-1 "
        f"({cell.write}) {' and '.join(harm)} — a job that has left running, or moved on to "
        "another step, is no longer the worker's: every write after the call (record, advance, "
        "requeue, fail) re-checks it (UPDATE ... WHERE id = ? AND step = <the step you ran> AND "
        "status = 'running') and changes nothing when no row matches"
    )


@pytest.mark.parametrize("cell", _cells("C"))
@graded("C", timeout=40)
async def test_send_email_step_never_changes_a_job_that_left_running_or_moved_on(
    kata: Kata, cell: Cell
) -> None:
    await _grade(kata, cell)


@pytest.mark.parametrize("cell", _cells("D"))
@graded("D", timeout=40)
async def test_process_job_never_changes_a_job_that_left_running_or_moved_on(
    kata: Kata, cell: Cell
) -> None:
    await _grade(kata, cell)
