"""The phrases several drills' explanations share, each quoting a run's record: the pool's
PoolTimeouts split by who met them, the errors the workers' code raised, API calls made inside a
transaction, an API's latency, a ratio. Nothing here measures."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ..figures import seconds
from ..record import RunRecord
from ..snapshot import Snapshot

__all__ = ["api", "callers", "calls", "error_lines", "pool_timeouts_line", "ratio", "s", "times"]


def s(value: float) -> str:
    """``389 ms`` or ``1.31 s``."""
    return seconds(value)


def pool_timeouts_line(snapshot: Snapshot) -> str:
    """The pool's PoolTimeouts, split by who met them; the parts add up to the pool's count."""
    total = snapshot.pool.timeouts
    raised = snapshot.worker_errors.get("PoolTimeout", 0)
    retried = snapshot.harness_errors.get("PoolTimeout", 0)
    handled = total - raised - retried
    parts = [f"{raised:,} reached claim_next_job or process_job as errors"]
    if retried:
        parts.append(f"{retried:,} hit a heartbeat or the re-read of a job, which retry")
    if handled > 0:
        parts.append(f"{handled:,} were caught inside the code")
    return (
        f"{total:,} PoolTimeouts after waiting {s(snapshot.pool.max_wait)} at most: "
        + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])
        + "."
    )


def callers(snapshot: Snapshot) -> str:
    if snapshot.heartbeat:
        return (
            f"at most {snapshot.callers_bound} can: {snapshot.workers} workers and, while they "
            "hold a job, their heartbeats"
        )
    return f"at most {snapshot.callers_bound} can: one per worker"


def error_lines(r: RunRecord, errors: Iterable[dict[str, Any]]) -> list[str]:
    """One line per type of error the workers' code raised, in the backend's words (the
    PoolTimeouts are the pool's line)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for error in errors:
        if error["type"] != "PoolTimeout":
            by_type.setdefault(error["type"], []).append(error)
    lines = []
    busy = r.deployment.get("busy_timeout_s") or 10.0
    for kind, groups in by_type.items():
        n = sum(group["count"] for group in groups)
        where = (
            f" in {groups[0]['where']}"
            if len(groups) == 1
            else ": " + " and ".join(f"{group['count']:,} in {group['where']}" for group in groups)
        )
        many, they = ("1 call", "it") if n == 1 else (f"{n:,} calls", "they")
        message = groups[0]["message"]
        if kind == "OperationalError" and "locked" in message:
            lines.append(
                f"{many} failed with OperationalError ('{message}'){where}; {they} waited "
                f"longer than SQLite's busy timeout ({busy:g} s) for the write lock. The same "
                "queue, not a separate fault."
            )
        else:
            detail = f" ({message})" if message else ""
            lines.append(f"{many} raised {kind}{detail}{where}.")
    return lines


def calls(counts: dict[str, int]) -> str:
    """``28 API calls (send_email 28) were``."""
    total = sum(counts.values())
    each = ", ".join(f"{op} {n:,}" for op, n in counts.items())
    if total == 1:
        return f"1 API call ({each}) was"
    return f"{total:,} API calls ({each}) were"


def api(r: RunRecord, operation: str) -> str:
    """``p50 120 ms, p99 480 ms`` of one API's successful calls."""
    spread = r.facts["api"][operation]
    return f"p50 {s(spread['p50'])}, p99 {s(spread['p99'])}"


def times(after: float, before: float) -> str:
    if before <= 0:
        return "up from 0 watched"
    return f"{after / before:.1f}x the {before:,.0f} watched"


def ratio(after: float, before: float) -> str:
    return f"{after / before:.1f}x" if before > 0 else "up from 0"
