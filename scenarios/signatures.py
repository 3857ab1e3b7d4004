"""Does a run show its incident's flaw? Decided from measured figures only: the same test the
suite applies to the incident's code, its fix, and a candidate's solution (``signature``), and
whether a fix cleared the symptom the incident's page names (``symptom``). Each drill declares
both with its diagnosis (``diagnoses/<slug>.py``).

``run`` is a ``RunRecord`` (or a ``RunResult``, for its record).
"""

from __future__ import annotations

from .catalog import diagnosis_of
from .diagnoses.slow_throughput import SLOW_SHARE
from .diagnosis import Verdict
from .measure import RunResult
from .record import RunRecord

__all__ = ["SLOW_SHARE", "Run", "Verdict", "record_of", "signature", "symptom"]

Run = RunRecord | RunResult


def record_of(run: Run) -> RunRecord:
    return run.record if isinstance(run, RunResult) else run


def signature(run: Run, baseline: Run | None = None) -> Verdict:
    """Whether ``run`` shows its incident's flaw; ``baseline`` is the fix on the same load,
    for an incident whose flaw only shows next to it (without one, incident 1 compares with
    the measured API capacity)."""
    record = record_of(run)
    base = record_of(baseline) if baseline is not None else None
    return diagnosis_of(record.incident).signature(record, base)


def symptom(watched: Run, fixed: Run) -> Verdict:
    """Whether ``fixed`` clears the symptom the incident's page names, in the page's terms:
    ``shows_flaw`` is True when the symptom is still there."""
    record = record_of(watched)
    return diagnosis_of(record.incident).symptom(record, record_of(fixed))
