"""The before/after table: the watched run and the fix's, on the same load and seed.

``comparison_rows`` are the figures that tell the incidents apart, as text (the HTML report
reads them too); ``render_comparison`` draws them as a rich table.
"""

from __future__ import annotations

from rich.table import Table

from .figures import errors, lease, seconds
from .snapshot import Snapshot

__all__ = ["comparison_rows", "render_comparison"]


def comparison_rows(before: Snapshot, after: Snapshot) -> list[tuple[str, str, str]]:
    """(what, before, after) for the figures that tell the incidents apart."""

    def p99(s: Snapshot, name: str) -> str:
        row = s.latency.get(name)
        return seconds(row["p99"]) if row and row["n"] else "-"

    def capacity(s: Snapshot) -> str:
        return f"{s.capacity:,.0f}" if s.capacity else "-"

    return [
        ("jobs/min (average)", f"{before.throughput_avg:,.0f}", f"{after.throughput_avg:,.0f}"),
        ("capacity, jobs/min", capacity(before), capacity(after)),
        *(
            (f"jobs {status}", f"{before.counts[status]:,}", f"{after.counts[status]:,}")
            for status in ("completed", "failed", "pending", "running")
        ),
        ("p99 claim", p99(before, "claim"), p99(after, "claim")),
        ("p99 send_email step", p99(before, "send_email"), p99(after, "send_email")),
        ("p99 any step", p99(before, "all steps"), p99(after, "all steps")),
        (
            "workers waiting on a lock (avg)",
            f"{before.states_avg['waiting on a lock']:.1f}",
            f"{after.states_avg['waiting on a lock']:.1f}",
        ),
        (
            "oldest transaction (max)",
            seconds(before.oldest_transaction_max),
            seconds(after.oldest_transaction_max),
        ),
        ("PoolTimeouts", f"{before.pool.timeouts:,}", f"{after.pool.timeouts:,}"),
        ("pool wait (max)", seconds(before.pool.max_wait), seconds(after.pool.max_wait)),
        (
            "pool callers waiting (peak)",
            f"{before.pool_peak_waiting:,}",
            f"{after.pool_peak_waiting:,}",
        ),
        (
            "worker errors",
            errors(before.worker_errors) or "none",
            errors(after.worker_errors) or "none",
        ),
        (
            "API calls inside a transaction",
            f"{before.calls_in_transaction:,}",
            f"{after.calls_in_transaction:,}",
        ),
        ("emails delivered", f"{before.delivered:,}", f"{after.delivered:,}"),
        ("duplicate copies", f"{before.duplicate_copies:,}", f"{after.duplicate_copies:,}"),
        ("lease, heartbeat", lease(before), lease(after)),
        ("jobs re-run after lease expiry", f"{before.recoveries:,}", f"{after.recoveries:,}"),
        *(_crash_rows(before, after) if before.crashes or after.crashes else []),
    ]


def _crash_rows(before: Snapshot, after: Snapshot) -> list[tuple[str, str, str]]:
    """The workers that died, and the job that killed the most, when either run had any."""

    def deadliest(s: Snapshot) -> str:
        top = s.most_crashed
        if top is None:
            return "-"
        return f"job {top.job_id}: {top.crashes:,}" + (", failed" if top.given_up else "")

    return [
        ("workers died mid-job", f"{before.crashes:,}", f"{after.crashes:,}"),
        ("most by one job", deadliest(before), deadliest(after)),
        (
            "workers down (avg)",
            f"{before.states_avg['stopped']:.1f}",
            f"{after.states_avg['stopped']:.1f}",
        ),
    ]


def render_comparison(
    before: Snapshot, after: Snapshot, *, labels: tuple[str, str] | None = None
) -> Table:
    """The before/after table; ``labels`` name the two columns (default: the variants)."""
    left, right = labels or (before.variant, after.variant)
    table = Table(
        title=f"Incident {before.scenario}: the same load and seed, measured twice",
        title_justify="left",
        expand=False,
    )
    table.add_column("")
    table.add_column(left, justify="right", style="red")
    table.add_column(right, justify="right", style="green")
    for what, left, right in comparison_rows(before, after):
        table.add_row(what, left, right)
    return table
