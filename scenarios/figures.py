"""How the drill's screens write a figure: seconds, bars, sparklines, error counts, the API calls'
short names. Shared by the live boards, the before/after table and the plain-text summary, so
that a figure reads the same on each.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, RenderResult
from rich.text import Text

from .snapshot import Snapshot

__all__ = [
    "API_ERROR_NAMES",
    "OPERATION_NAMES",
    "Packed",
    "bar",
    "callers",
    "crashes",
    "errors",
    "lease",
    "operation_order",
    "ran",
    "seconds",
    "sparkline",
    "timeouts_split",
]

_BLOCKS = "▁▂▃▄▅▆▇█"
#: The API calls' names on a board, in the order a job makes them.
OPERATION_NAMES = {
    "send_email": "send",
    "get_reply": "reply",
    "analyze_sentiment": "sentiment",
    "route_customer": "crm",
}
#: A call the stop cut short is not the API's error: say what happened to it (in few enough
#: words that it fits a narrow panel's line with its count).
API_ERROR_NAMES = {"CancelledError": "stopped mid-call"}


@dataclass(frozen=True)
class Packed:
    """Items (``PoolTimeout 13``) joined by `` · ``, as many to a line as fit the width they are
    drawn at: a line breaks between two items, never inside one (a name and its count)."""

    items: list[str]
    style: str = ""

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines: list[str] = []
        for item in self.items:
            if lines and len(lines[-1]) + 3 + len(item) <= options.max_width:
                lines[-1] += " · " + item
            else:
                lines.append(item)
        yield Text("\n".join(lines), style=self.style)


def errors(by_type: dict[str, int]) -> str:
    """``OperationalError 9 · PoolTimeout 13`` (empty for none)."""
    return " · ".join(f"{name} {n:,}" for name, n in sorted(by_type.items()))


def callers(s: Snapshot) -> str:
    """Who may ask the pool for a connection at once."""
    return f"{s.workers} workers + their heartbeats" if s.heartbeat else f"{s.workers} workers"


def timeouts_split(s: Snapshot) -> str:
    """Whose the pool's PoolTimeouts were: the parts add up to the pool's count."""
    total = s.pool.timeouts
    raised = s.worker_errors.get("PoolTimeout", 0)
    retried = s.harness_errors.get("PoolTimeout", 0)
    if not total or raised == total:
        return ""
    parts = [f"{raised:,} raised to the workers", f"{retried:,} retried"]
    if total - raised - retried > 0:
        parts.append(f"{total - raised - retried:,} caught in the code")
    return " (" + " + ".join(parts) + ")"


def crashes(s: Snapshot) -> str:
    """``43 workers died mid-job, all running job 4; it went back to the queue 42 times``."""
    top = s.most_crashed
    if top is None:
        return "no worker died"
    died = "1 worker died" if s.crashes == 1 else f"{s.crashes:,} workers died"
    who = "all" if top.crashes == s.crashes else f"{top.crashes:,}"
    back = f"; it went back to the queue {top.recoveries:,} times" if top.recoveries else ""
    failed = ", then was failed" if top.given_up else ""
    return f"{died} mid-job, {who} running job {top.job_id}{back}{failed}"


def lease(s: Snapshot) -> str:
    return f"{s.lease:g} s, {'on' if s.heartbeat else 'off'}"


def sparkline(values: list[float]) -> str:
    """``▁▃▇`` for a series (empty for none); all zeros draw as the lowest block."""
    if not values:
        return ""
    top = max(values)
    if top <= 0:
        return _BLOCKS[0] * len(values)
    return "".join(
        _BLOCKS[min(len(_BLOCKS) - 1, int(v / top * (len(_BLOCKS) - 1) + 0.5))] for v in values
    )


def bar(share: float, width: int) -> str:
    """``███▌····``: ``share`` (0 to 1) of ``width`` cells."""
    filled = max(0.0, min(1.0, share)) * width
    full = int(filled)
    return (
        "█" * full
        + ("▌" if filled - full >= 0.5 else "")
        + "·" * (width - full - (filled - full >= 0.5))
    )


def seconds(value: float | None) -> str:
    """``389 ms`` or ``1.31 s`` (``-`` for none)."""
    if value is None:
        return "-"
    if value < 1.0:
        return f"{value * 1000:.0f} ms"
    return f"{value:.2f} s"


def operation_order(operation: str) -> int:
    names = list(OPERATION_NAMES)
    return names.index(operation) if operation in names else len(names)


def ran(s: Snapshot) -> str:
    """How long the run lasted, and why longer than its duration when it did."""
    if s.elapsed <= s.duration:
        return f"{s.elapsed:.1f} s (the queue drained)" if s.finished else f"{s.elapsed:.1f} s"
    return (
        f"{s.duration:g} s, then {s.elapsed - s.duration:.1f} s for the workers to finish the "
        "calls they were in"
    )
