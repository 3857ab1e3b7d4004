"""Diagnoses, not tracebacks: one sentence that names the mistake, with the evidence.

A grading test fails through ``fail(...)`` with a diagnosis it wrote itself, or because the
candidate's code raised; then ``describe_exception`` points at the candidate's own frame first,
since the harness's frames are not where the bug is.
"""

from __future__ import annotations

import linecache
import traceback
from pathlib import Path
from typing import NoReturn

import pytest

from ..tasks import not_started
from ..worker.solutions import NotDefined
from ..world.ledger import Violation, ViolationKind

__all__ = ["candidate_frames", "describe_exception", "describe_violation", "fail", "not_started"]


def fail(diagnosis: str) -> NoReturn:
    """Fail the current grading test with ``diagnosis`` (shown as is, without a traceback)."""
    pytest.fail(diagnosis, pytrace=False)


def candidate_frames(error: BaseException, solution: Path) -> list[traceback.FrameSummary]:
    """The frames of the solution's file that ``error`` went through, outermost first."""
    solution = solution.resolve()
    frames = traceback.extract_tb(error.__traceback__)
    return [f for f in frames if Path(f.filename).resolve() == solution and f.lineno is not None]


def describe_exception(error: BaseException, solution: Path, function: str | None = None) -> str:
    """ "claim_next_job raised KeyError: 'id' at solution.py:42 (`return rows[0]['id']`)"."""
    if isinstance(error, NotDefined):
        return str(error)
    if isinstance(error, NotImplementedError) and function:
        own = candidate_frames(error, solution)
        if own and own[-1].name == function:
            return not_started(function)
    where = ""
    own = candidate_frames(error, solution)
    if own:
        frame = own[-1]
        line = (frame.line or linecache.getline(frame.filename, frame.lineno or 0)).strip()
        where = f" at {solution.name}:{frame.lineno} in {frame.name}()" + (
            f": `{line}`" if line else ""
        )
    who = f"{function}() raised " if function else ""
    message = str(error).splitlines()[0] if str(error) else ""
    notes = [n for n in getattr(error, "__notes__", []) if n.startswith("while running SQL")]
    sql = f" ({notes[0]})" if notes else ""
    return f"{who}{type(error).__name__}: {message}{where}{sql}".rstrip()


#: Why a violation is wrong and what to do, for violations whose detail already says which call
#: did what, where: the diagnosis says each thing once.
_WHY = {
    ViolationKind.CALL_IN_TRANSACTION: (
        "the transaction's connection (and on SQLite the whole database's write lock) stays "
        "held for the whole network round trip, and a rollback cannot undo the call — call the "
        "API outside `transaction()`, then record its result in a short transaction of its own"
    ),
}

_ADVICE = {
    ViolationKind.RETRY_BEFORE_RETRY_AFTER: (
        "a rate-limited request was retried before its retry_after had passed — wait at least "
        "retry_after seconds (backoff may wait longer, never shorter)"
    ),
    ViolationKind.RETRY_AFTER_PERMANENT_ERROR: (
        "a permanent error was retried — InvalidEmailError will never succeed: fail the job "
        "with last_error after the first attempt"
    ),
    ViolationKind.IDEMPOTENCY_KEY_REUSED: (
        "one idempotency key was sent with different arguments — derive the key from the job "
        "and step, and send the same arguments with it every time"
    ),
    ViolationKind.WAIT_IN_TRANSACTION: (
        "a backoff wait (asyncio.sleep) ran while the worker held a database transaction: the "
        "connection (and on SQLite the write lock) is held for the whole wait — leave "
        "`transaction()` before waiting, and keep it to the database writes"
    ),
}


def describe_violation(violation: Violation) -> str:
    kind = ViolationKind(violation.kind)
    if kind in _WHY:
        return f"{violation.detail}: {_WHY[kind]}"
    return f"{_ADVICE[kind]} ({violation.detail})"
