"""What a run measured: the numbers the dashboards draw and the grader reports.

Every figure is measured from the run itself: job counts come from the database, API figures
from the service ledger, pool figures from the pool's own meter. Nothing here is scripted.
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any

from ..sql.pool import PoolStats

__all__ = ["RunMetrics", "Sample", "percentile"]


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0-100) by nearest rank; 0.0 for no values."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


@dataclass(frozen=True)
class Sample:
    """The state of the system at one moment of the run."""

    at: float  # seconds since the run started
    counts: dict[str, int]  # jobs by status
    pool: PoolStats
    round_trips: int
    open_transactions: int
    oldest_transaction: float  # age in seconds of the oldest open transaction


@dataclass
class RunMetrics:
    """Counters and samples of one run. The runner writes; dashboards and reports read."""

    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    claims: int = 0
    empty_claims: int = 0
    crashes: int = 0
    recoveries: int = 0
    step_seconds: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    claim_seconds: list[float] = field(default_factory=list)
    candidate_errors: Counter[str] = field(default_factory=Counter)
    worker_state: dict[str, str] = field(default_factory=dict)
    samples: list[Sample] = field(default_factory=list)

    def elapsed(self) -> float:
        return (self.finished or time.monotonic()) - self.started

    @property
    def latest(self) -> Sample | None:
        return self.samples[-1] if self.samples else None

    def step_percentiles(self) -> dict[str, dict[str, float]]:
        return {
            step: {
                "p50": percentile(values, 50),
                "p95": percentile(values, 95),
                "p99": percentile(values, 99),
                "n": float(len(values)),
            }
            for step, values in self.step_seconds.items()
        }

    def finished_jobs(self) -> int:
        sample = self.latest
        return (
            0
            if sample is None
            else sample.counts.get("completed", 0) + sample.counts.get("failed", 0)
        )

    def throughput_per_minute(self, window: float = 5.0) -> float:
        """Jobs finished (completed or failed) per minute over the last ``window`` seconds."""
        if len(self.samples) < 2:
            return 0.0
        last = self.samples[-1]
        first = next((s for s in self.samples if s.at >= last.at - window), self.samples[0])
        done = lambda s: s.counts.get("completed", 0) + s.counts.get("failed", 0)  # noqa: E731
        span = last.at - first.at
        return 60.0 * (done(last) - done(first)) / span if span > 0 else 0.0

    def throughput_series(self, buckets: int = 30) -> list[float]:
        """Jobs finished per minute in ``buckets`` equal slices of the run (for sparklines)."""
        if len(self.samples) < 2:
            return []
        end = self.samples[-1].at
        width = end / buckets if end > 0 else 1.0
        done = [
            (s.at, s.counts.get("completed", 0) + s.counts.get("failed", 0)) for s in self.samples
        ]
        series, previous, index = [], 0, 0
        for b in range(1, buckets + 1):
            while index < len(done) and done[index][0] <= b * width:
                index += 1
            current = done[index - 1][1] if index else 0
            series.append(60.0 * (current - previous) / width)
            previous = current
        return series

    def snapshot(self) -> dict[str, Any]:
        """A JSON-friendly summary."""
        latest = self.latest
        return {
            "elapsed_s": round(self.elapsed(), 3),
            "claims": self.claims,
            "empty_claims": self.empty_claims,
            "crashes": self.crashes,
            "recoveries": self.recoveries,
            "jobs": dict(latest.counts) if latest else {},
            "throughput_per_min": round(self.throughput_per_minute(), 1),
            "step_latency_s": {
                k: {q: round(v, 4) for q, v in d.items()}
                for k, d in self.step_percentiles().items()
            },
            "candidate_errors": dict(self.candidate_errors),
            "pool": latest.pool.as_psycopg_stats() if latest else {},
            "round_trips": latest.round_trips if latest else 0,
        }
