"""A graded test's verdict, decided once: ``pytest``'s scorecard, ``--kata-json``, ``python -m
harness grade`` and watch mode all read the status this module gives.

A graded test passes or fails; it is never skipped. pytest would report ``pytest.skip()``,
``pytest.xfail()``, ``pytest.importorskip`` or ``unittest.SkipTest`` as "skipped", counted as
neither a pass nor a failure, so a solution could skip the tests it fails. Here a skip is a
failure, whoever raised it; when the solution's file raised it, the diagnosis says so and where:
"claim_next_job() raised pytest's Skipped ('later') at solution.py:12 — a solution may not skip
a graded test". Whose code raised it is read from the traceback's frames whose file *is* the
solution file (never a folder), and only sharpens the diagnosis.

This module must stay importable without pytest (a claim in a worker process describes its skip
with ``skip_diagnosis`` too).
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

__all__ = ["FAIL", "PASS", "is_skip", "skip_diagnosis", "status_of"]

PASS = "pass"
FAIL = "fail"


def _skip_name(error: BaseException) -> str | None:
    """What kind of skip ``error`` is, in words, or None when it is none. (A skip raised by pytest
    means pytest is imported: its classes are looked up where they live, never imported here.)"""
    outcomes = sys.modules.get("_pytest.outcomes")
    if outcomes is not None:
        if isinstance(error, outcomes.XFailed):
            return "pytest's XFailed (pytest.xfail)"
        if isinstance(error, outcomes.Skipped):
            return "pytest's Skipped"
    unittest = sys.modules.get("unittest")
    if unittest is not None and isinstance(error, unittest.SkipTest):
        return "unittest's SkipTest"
    return None


def is_skip(error: BaseException | None) -> bool:
    """Whether ``error`` would have pytest report the test skipped (or xfailed)."""
    return error is not None and _skip_name(error) is not None


def status_of(passed: bool) -> str:
    """A graded test's status: it passed, or it failed (a skip is a failure, see above)."""
    return PASS if passed else FAIL


def skip_diagnosis(error: BaseException, solution: Path, function: str | None = None) -> str:
    """Why a skip fails the test: what was raised, with its reason, and where, when the solution's
    own file raised it."""
    kind = _skip_name(error) or type(error).__name__
    reason = str(getattr(error, "msg", None) or error or "").strip().splitlines()
    said = f"{kind} ({reason[0]!r})" if reason and reason[0] else kind
    solution = solution.resolve()
    own = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if frame.lineno is not None and Path(frame.filename).resolve() == solution
    ]
    if not own:
        return (
            f"the test was skipped by {said}, raised outside {solution.name} — a graded test "
            "is never skipped: it counts as failed"
        )
    frame = own[-1]
    who = f"{function}()" if function else f"{frame.name}()"
    return (
        f"{who} raised {said} at {solution.name}:{frame.lineno} — a solution may not skip a "
        "graded test"
    )
