"""Why a run went wrong: the root cause, the evidence in this run's record that points to it
(quoting the numbers the board showed), the fix, and the histories of the jobs that show it.

Each drill declares its explanation with its diagnosis (``diagnoses/<slug>.py``); ``explain(run,
fixed)`` adds the offending jobs' histories. Nothing here measures, so ``--explain`` quotes
exactly the run that was watched.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace

from harness.world.history import Event, Timeline

from .catalog import diagnosis_of
from .diagnosis import Explanation
from .record import RunRecord
from .signatures import Run, record_of

__all__ = ["Explanation", "explain", "history_lines"]


def explain(run: Run, fixed: Run | None = None) -> Explanation:
    """Root cause, evidence quoted from ``run`` (the watched run) and ``fixed`` (the fix on the
    same load and seed), the fix, and the offending jobs' histories."""
    record = record_of(run)
    after = record_of(fixed) if fixed is not None else None
    try:
        diagnosis = diagnosis_of(record.incident)
    except LookupError:
        raise ValueError(f"no explanation for incident {record.incident}") from None
    return replace(diagnosis.explain(record, after), jobs=history_lines(record, limit=2))


def history_lines(r: RunRecord, *, limit: int, width: int = 100) -> list[str]:
    """The first ``limit`` offending jobs' histories, as lines: each job's timeline, drawn as
    the grader draws a race's (``harness.world.history``)."""
    lines = []
    for job in r.jobs[:limit]:
        email = f" ({job['email']})" if job["email"] else ""
        lines += textwrap.wrap(
            f"job {job['job_id']}{email}: {job['why']}",
            width,
            subsequent_indent="  ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        lines += Timeline(
            [
                Event(e["at"], e["worker"], e["kind"], e["what"], tuple(e["jobs"]), e["site"])
                for e in job["events"]
            ],
            0.0,
        ).lines(width)
    return lines
