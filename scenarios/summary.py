"""The board as plain lines, for output that is not a terminal (a pipe, a log, ``CliRunner``),
and the line that says a run's totals were re-counted from the database and the ledger.

Every figure is the snapshot's (or the record's), worded as the board words it.
"""

from __future__ import annotations

from .figures import API_ERROR_NAMES, crashes, errors, ran, seconds, timeouts_split
from .record import RunRecord
from .snapshot import STATES, Snapshot

__all__ = ["plain_summary", "verified_line"]


def plain_summary(s: Snapshot) -> str:
    """The board as plain lines, for output that is not a terminal."""
    c = s.counts
    lines = [
        f"Incident {s.scenario}: {s.title} - {s.variant}, {s.database}",
        f"  {s.workers} workers on {s.jobs:,} jobs for {ran(s)}",
        f"  jobs (database): {c['pending']:,} pending, {c['running']:,} running, "
        f"{c['completed']:,} completed, {c['failed']:,} failed",
        f"  throughput: {s.throughput_avg:,.0f} jobs/min on average"
        + (
            f"; capacity {s.capacity:,.0f} jobs/min ({s.workers} workers, "
            f"{seconds(s.api_seconds_per_job)} of API time per job)"
            if s.capacity and s.api_seconds_per_job
            else ""
        ),
        "  latency p50/p95/p99: "
        + "; ".join(
            f"{name} {seconds(row['p50'])}/{seconds(row['p95'])}/{seconds(row['p99'])}"
            for name, row in s.latency.items()
            if row["n"]
        ),
        "  workers (average over the run): "
        + ", ".join(f"{s.states_avg.get(state, 0.0):.1f} {state}" for state in STATES),
        f"  pool: {s.pool.max_size} connections, full {s.pool_saturated_share:.0%} of the time, "
        f"peak {s.pool_peak_waiting} callers waiting (of at most {s.callers_bound}), max wait "
        f"{seconds(s.pool.max_wait)}, {s.pool.timeouts:,} PoolTimeout{timeouts_split(s)}",
        f"  transactions: oldest reached {seconds(s.oldest_transaction_max)}; "
        f"{s.calls_in_transaction:,} API calls made inside one",
        "  API calls: "
        + (", ".join(f"{op} {n:,}" for op, n in sorted(s.api_calls.items())) or "none")
        + "; errors: "
        + (
            ", ".join(
                f"{API_ERROR_NAMES.get(name, name)} {n:,}"
                for name, n in sorted(s.api_errors.items())
            )
            or "none"
        ),
        f"  emails: {s.delivered:,} delivered, {s.duplicate_copies:,} duplicate copies to "
        f"{s.duplicated_recipients:,} customers",
        f"  leases: {s.lease:g} s, heartbeat {'on' if s.heartbeat else 'off'}; "
        f"{s.recoveries:,} jobs handed to another worker after their lease expired",
        f"  crashes: {crashes(s)}",
        "  worker errors: "
        + (", ".join(f"{name} {n:,}" for name, n in sorted(s.worker_errors.items())) or "none")
        + (
            f"; retried in heartbeats and job re-reads: {errors(s.harness_errors)}"
            if s.harness_errors
            else ""
        ),
    ]
    return "\n".join(lines)


def verified_line(run: RunRecord, *, recorded: bool = False) -> str:
    """Markup: the totals re-counted after the run (or ``recorded`` with it), which match the
    board's."""
    t = run.totals
    when = "when it ran" if recorded else "after the workers stopped"
    return (
        f"[dim]Totals re-counted from the database and the ledger {when}: "
        f"{t['pending']:,} pending, {t['running']:,} running, "
        f"{t['completed']:,} completed, {t['failed']:,} failed; {t['delivered']:,} emails "
        f"delivered, {t['duplicate_copies']:,} duplicate copies - they match the board. "
        f"Recorded as {run.id}.[/]\n"
    )
