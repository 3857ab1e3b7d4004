"""Does a run show its incident's flaw? Decided from measured figures only: the same test the
suite applies to the incident's code, its fix, and a candidate's solution (``signature``), and
whether a fix cleared the symptom the incident's page names (``symptom``).

``run`` is a ``RunRecord`` (or a ``RunResult``, for its record).
"""

from __future__ import annotations

from dataclasses import dataclass

from .measure import RunResult
from .record import RunRecord

__all__ = ["SLOW_SHARE", "Run", "Verdict", "record_of", "signature", "symptom"]

#: Incident 1 shows its flaw when throughput is below this share of the fix's on the same load.
SLOW_SHARE = 0.25


@dataclass(frozen=True)
class Verdict:
    shows_flaw: bool
    summary: str

    def as_dict(self) -> dict[str, object]:
        return {"shows_flaw": self.shows_flaw, "summary": self.summary}


Run = RunRecord | RunResult


def record_of(run: Run) -> RunRecord:
    return run.record if isinstance(run, RunResult) else run


def signature(run: Run, baseline: Run | None = None) -> Verdict:
    """Whether ``run`` shows its incident's flaw. Incident 1 compares with ``baseline`` (the
    fix on the same load); without one it compares with the measured API capacity."""
    record = record_of(run)
    number = record.incident
    s = record.snapshot
    if number == 1:
        if baseline is not None:
            base = record_of(baseline).jobs_per_minute
            reference, what = base, f"the fix's {base:,.0f}"
        else:
            reference, what = s.capacity or 0.0, f"a capacity of {s.capacity or 0:,.0f}"
        share = s.throughput_avg / reference if reference else 1.0
        return Verdict(
            share < SLOW_SHARE,
            f"{s.throughput_avg:,.0f} jobs/min is {share:.0%} of {what} jobs/min on the same "
            f"load (the flaw shows below {SLOW_SHARE:.0%})",
        )
    if number == 2:
        return Verdict(
            s.duplicate_copies > 0,
            f"{s.duplicate_copies:,} duplicate copies of the email went to "
            f"{s.duplicated_recipients:,} customers",
        )
    if number == 3:
        return Verdict(
            s.pool.timeouts > 0,
            f"{s.pool.timeouts:,} PoolTimeouts; p99 of a claim {_s(s.latency['claim']['p99'])}",
        )
    raise ValueError(f"no signature for incident {number}")


def symptom(watched: Run, fixed: Run) -> Verdict:
    """Whether ``fixed`` clears the symptom the incident's page names, in the page's terms:
    ``shows_flaw`` is True when the symptom is still there."""
    w, f = record_of(watched).snapshot, record_of(fixed).snapshot
    number = record_of(watched).incident
    if number == 1:
        return Verdict(
            signature(fixed, fixed).shows_flaw or not signature(watched, fixed).shows_flaw,
            f"throughput {w.throughput_avg:,.0f} → {f.throughput_avg:,.0f} jobs/min "
            f"({_ratio(f.throughput_avg, w.throughput_avg)})",
        )
    if number == 2:
        return Verdict(
            f.duplicate_copies > 0,
            f"duplicate copies {w.duplicate_copies:,} → {f.duplicate_copies:,}; jobs handed to a "
            f"second worker {w.recoveries:,} → {f.recoveries:,}",
        )
    if number == 3:
        before, after = w.latency["claim"]["p99"], f.latency["claim"]["p99"]
        locked = sum(n for kind, n in w.worker_errors.items() if kind != "PoolTimeout")
        still = sum(n for kind, n in f.worker_errors.items() if kind != "PoolTimeout")
        return Verdict(
            f.pool.timeouts > 0 or after >= before or still > 0,
            f"PoolTimeouts {w.pool.timeouts:,} → {f.pool.timeouts:,}; claim p99 {_s(before)} → "
            f"{_s(after)}"
            + (f"; other worker errors {locked:,} → {still:,}" if locked or still else ""),
        )
    raise ValueError(f"no symptom for incident {number}")


def _ratio(after: float, before: float) -> str:
    return f"{after / before:.1f}x" if before > 0 else "up from 0"


def _s(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1.0 else f"{value:.2f} s"
