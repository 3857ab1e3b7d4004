"""The on-call dashboard: a pure function from a ``Snapshot`` to something rich can draw.

``render(snapshot)`` is the live board (queue, throughput, latency, pool and transactions,
workers, APIs and emails). It computes no figure: every number is the snapshot's, measured from
the run. The before/after table is ``comparison``'s, the text for a pipe ``summary``'s.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .compact import SQUEEZES, render_compact
from .figures import (
    API_ERROR_NAMES,
    OPERATION_NAMES,
    Packed,
    bar,
    callers,
    crashes,
    errors,
    operation_order,
    seconds,
    sparkline,
    timeouts_split,
)
from .snapshot import RECENT, STATES, Snapshot

__all__ = ["NARROW", "render"]

#: Narrower than this, the panels say less per line, so that each fits half the width (80x24).
NARROW = 110
#: p99s drawn in red: a claim is one statement (milliseconds); a step makes API calls.
_SLOW_CLAIM = 0.25
_SLOW_STEP = 1.0

_STATE_STYLE = {
    "waiting on a lock": ("L", "bold red"),
    "in an API call": ("A", "yellow"),
    "claiming": ("C", "cyan"),
    "processing": ("P", "green"),
    "idle": ("·", "dim"),
    "stopped": ("x", "dim red"),
}
_STATUS_STYLE = {
    "pending": "yellow",
    "running": "cyan",
    "completed": "green",
    "failed": "red",
}


def render(s: Snapshot, *, width: int | None = None, height: int | None = None) -> RenderableType:
    """The board for one snapshot, laid out for a screen ``width`` by ``height`` (default: the
    width it is drawn at, any height). The whole board when it fits the height; else the compact
    one (``compact``), which shows the same figures in about 23 lines at 80 columns."""
    return _Board(s, width, height)


@dataclass(frozen=True)
class _Board:
    snapshot: Snapshot
    width: int | None
    height: int | None

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = min(self.width or options.max_width, options.max_width)
        options = options.update_width(width)
        options = options.update(height=None)
        board: RenderableType = self._full(width)
        if self.height is not None and _height(console, options, board) > self.height:
            for squeeze in SQUEEZES:  # beyond 0, for a run with many kinds of error at once
                board = render_compact(self.snapshot, squeeze=squeeze)
                if _height(console, options, board) <= self.height:
                    break
        yield board

    def _full(self, width: int) -> Group:
        s, narrow = self.snapshot, width < NARROW
        grid = Table.grid(expand=True, padding=(0, 1))
        grid.add_column(ratio=1)
        grid.add_column(ratio=1)
        grid.add_row(_queue(s, narrow), _throughput(s, narrow))
        grid.add_row(_latency(s, narrow), _pool(s, narrow))
        grid.add_row(_workers(s, narrow), _apis(s, narrow))
        return Group(_header(s, width), grid)


def _height(console: Console, options: ConsoleOptions, renderable: RenderableType) -> int:
    return len(console.render_lines(renderable, options, pad=False))


# -- panels ----------------------------------------------------------------------------------------


def _header(s: Snapshot, width: int) -> Text:
    """The incident, the code that runs, the database and the progress: as many to a line as
    fit the width, a line breaking between two of them, never inside one."""
    state = "stopped" if s.finished else "running"
    progress = min(1.0, s.elapsed / s.duration) if s.duration else 1.0
    title = Text()
    title.append(f" INCIDENT {s.scenario} ", style="bold white on red")
    title.append(f" {s.title}", style="bold")
    where = Text(s.database, style="dim")
    clock = Text(f"{min(s.elapsed, s.duration):5.1f} s / {s.duration:g} s ")
    clock.append(bar(progress, 16), style="blue")
    clock.append(f"  {state}", style="green" if s.finished else "yellow")
    header = title
    line = title.cell_len
    for part, gap in (
        (Text(s.variant, style="bold magenta"), "  "),
        (where, "  ·  "),
        (clock, "  ·  "),
    ):
        if line + len(gap) + part.cell_len <= width:
            header = Text.assemble(header, Text(gap, style="dim"), part)
            line += len(gap) + part.cell_len
        else:
            header = Text.assemble(header, "\n", part)
            line = part.cell_len
    return header


def _queue(s: Snapshot, narrow: bool = False) -> Panel:
    table = Table.grid(padding=(0, 1))
    table.add_column(min_width=10, no_wrap=True)
    table.add_column(justify="right", min_width=7, no_wrap=True)
    table.add_column(no_wrap=True, overflow="crop")  # a bar: drawn as wide as there is room
    for status in ("pending", "running", "completed", "failed"):
        n = s.counts.get(status, 0)
        share = n / s.jobs if s.jobs else 0.0
        drawn = bar(share, 16 if narrow else 28)
        table.add_row(status, f"{n:,}", Text(drawn, style=_STATUS_STYLE[status]))
    table.add_row(Text("total", style="dim"), Text(f"{s.jobs:,}", style="dim"), "")
    title = "Queue (jobs in the database)" if narrow else "Queue depth (jobs in the database)"
    return Panel(table, title=title, title_align="left")


def _throughput(s: Snapshot, narrow: bool = False) -> Panel:
    table = Table.grid(padding=(0, 1))
    table.add_column(min_width=8 if narrow else 10, no_wrap=True)
    table.add_column(justify="right", min_width=5 if narrow else 7, no_wrap=True)
    table.add_column()
    table.add_row("now", f"{s.throughput_now:,.0f}", f"jobs/min (last {RECENT:g} s)")
    since = "jobs/min overall" if narrow else "jobs/min since the start"
    table.add_row("average", f"{s.throughput_avg:,.0f}", since)
    if s.capacity and s.api_seconds_per_job:
        share = s.throughput_avg / s.capacity
        per_job = seconds(s.api_seconds_per_job)
        table.add_row(
            "capacity",
            f"{s.capacity:,.0f}",
            f"jobs/min: {s.workers} workers ÷ {per_job}"
            + (" API/job" if narrow else " of API time/job"),
        )
        table.add_row(
            "", Text(f"{share:.0%}", style="bold red" if share < 0.25 else "green"), "of capacity"
        )
    else:
        table.add_row("capacity", "…", "(waiting for the first job's API calls)")
    peak = max(s.series, default=0.0)
    if not narrow:
        table.add_row("", "", "")
    trend = sparkline(s.series[-18:] if narrow else s.series)
    table.add_row(
        "trend", "", Text(trend, style="cyan") + Text(f" peak {peak:,.0f}/min", style="dim")
    )
    title = (
        "Throughput (jobs done or failed)" if narrow else "Throughput (jobs completed or failed)"
    )
    return Panel(table, title=title, title_align="left")


#: The rows of the latency panel: a claim, then process_job's steps (each step is more than its
#: API call: the send_email step is not SendGrid's latency, which the debrief quotes).
_LATENCY_ROWS = {
    "claim": "claim",
    "send_email": "send_email step",
    "analyze": "analyze step",
    "take_action": "take_action step",
    "all steps": "all steps",
}


def _latency(s: Snapshot, narrow: bool = False) -> Panel:
    # Narrow: no count, units without their space, so that "389 ms" never wraps onto two lines.
    table = Table(box=None, padding=(0, 0, 0, 1), pad_edge=False, show_edge=False, expand=True)
    table.add_column("", no_wrap=True)
    figures = ("p50", "p95", "p99") if narrow else ("calls", "p50", "p95", "p99")
    for name in figures:
        table.add_column(name, justify="right", no_wrap=True)

    def figure(value: float) -> str:
        return seconds(value).replace(" ", "") if narrow else seconds(value)

    for name, label in _LATENCY_ROWS.items():
        row = s.latency.get(name)
        count = [] if narrow else ["0"]
        if row is None or not row["n"]:
            table.add_row(label, *count, "-", "-", "-", style="dim")
            continue
        style = "bold" if name == "all steps" else None
        slow = _SLOW_CLAIM if name == "claim" else _SLOW_STEP
        count = [] if narrow else [f"{row['n']:,.0f}"]
        table.add_row(
            label,
            *count,
            figure(row["p50"]),
            figure(row["p95"]),
            Text(figure(row["p99"]), style="bold red" if row["p99"] >= slow else ""),
            style=style,
        )
    title = (
        "Latency (claim; each step)"
        if narrow
        else "Latency per call (claim_next_job; process_job, step by step)"
    )
    return Panel(table, title=title, title_align="left")


def _pool(s: Snapshot, narrow: bool = False) -> Panel:
    pool = s.pool
    table = Table.grid(padding=(0, 1))
    table.add_column(min_width=12, no_wrap=True)
    table.add_column()
    in_use = pool.in_use / pool.max_size if pool.max_size else 0.0
    full = f"full {s.pool_saturated_share:.0%} of the time"
    table.add_row(
        "in use",
        Text(f"{pool.in_use} / {pool.max_size}  ")
        + Text(bar(in_use, 12 if narrow else 20), style="red" if in_use >= 1 else "green")
        + Text("" if narrow else f"  {full}", style="dim"),
    )
    if narrow:
        table.add_row("", Text(full, style="dim"))
    table.add_row(
        "waiting",
        Text(f"{pool.waiting} callers now · peak {s.pool_peak_waiting} ")
        + Text(f"(of at most {s.callers_bound}: {callers(s)})", style="dim"),
    )
    table.add_row("wait time", f"mean {seconds(pool.mean_wait)} · max {seconds(pool.max_wait)}")
    table.add_row(
        "timeouts",
        Text(f"{pool.timeouts:,} PoolTimeout", style="bold red" if pool.timeouts else "green")
        + Text(timeouts_split(s), style="dim"),
    )
    table.add_row(
        "transactions",
        Text(f"{s.transactions_open} open · oldest {seconds(s.oldest_transaction)}")
        + Text(
            f" (max {seconds(s.oldest_transaction_max)})",
            style="bold red" if s.oldest_transaction_max >= 0.05 else "dim",
        ),
    )
    table.add_row("round trips", f"{s.round_trips:,}")
    return Panel(table, title="Connection pool & transactions", title_align="left")


def _workers(s: Snapshot, narrow: bool = False) -> Panel:
    # Narrow: no bar (the strip under the table draws every worker), the average whole.
    table = Table.grid(padding=(0, 1))
    table.add_column(min_width=17, no_wrap=True)
    table.add_column(justify="right", min_width=3, no_wrap=True)
    if not narrow:
        table.add_column(no_wrap=True, overflow="crop")
    table.add_column(justify="right", no_wrap=True)
    for state in STATES:
        n = s.states.get(state, 0)
        symbol, style = _STATE_STYLE[state]
        bar = [] if narrow else [Text("■" * min(n, 24), style=style)]
        table.add_row(
            Text(f"{symbol} {state}", style=style if n else "dim"),
            str(n),
            *bar,
            Text(f"avg {s.states_avg.get(state, 0.0):.1f}", style="dim"),
        )
    strip = Text()
    for view in s.worker_views:
        symbol, style = _STATE_STYLE[view.state]
        strip.append(symbol, style=style)
    waits = [v for v in s.worker_views if v.state == "waiting on a lock"]
    longest = max(waits, key=lambda v: v.waited, default=None)
    lines: list[RenderableType] = [table, strip]
    if longest is not None:
        lines.append(Text(f"longest wait: {longest.name} in {longest.detail}", style="dim"))
    lock = "L: SQL > 50 ms" if narrow else "a statement running > 50 ms is waiting on a lock"
    title = f"Workers ({s.workers}; {lock})"
    return Panel(Group(*lines), title=title, title_align="left")


def _apis(s: Snapshot, narrow: bool = False) -> Panel:
    table = Table.grid(padding=(0, 1))
    table.add_column(min_width=8 if narrow else 13, no_wrap=True)
    table.add_column()
    calls = " · ".join(
        f"{OPERATION_NAMES.get(op, op)} {n:,}"
        for op, n in sorted(s.api_calls.items(), key=lambda item: operation_order(item[0]))
    )
    table.add_row("calls", calls or "none yet")
    table.add_row("in flight", f"{s.api_in_flight} calls under way")
    # Each error whole on its line: "stopped mid-call 1" never leaves its count on the next one.
    failed = [
        f"{API_ERROR_NAMES.get(name, name)} {n:,}" for name, n in sorted(s.api_errors.items())
    ]
    table.add_row("API errors", Packed(failed, "red") if failed else Text("none", style="green"))
    table.add_row(
        "in a txn",
        Text(
            f"{s.calls_in_transaction:,} calls made while holding a database transaction",
            style="bold red" if s.calls_in_transaction else "green",
        ),
    )
    table.add_row(
        "emails",
        Text(f"{s.delivered:,} delivered · ")
        + Text(
            f"{s.duplicate_copies:,} duplicate copies to {s.duplicated_recipients:,} customers",
            style="bold red" if s.duplicate_copies else "green",
        ),
    )
    table.add_row("lease", f"{s.lease:g} s, heartbeat {'on' if s.heartbeat else 'off'}")
    table.add_row(
        "lease expired",
        f"{s.recoveries:,} running jobs handed to a second worker",
    )
    table.add_row("crashes", Text(crashes(s), style="bold red" if s.crashes else "green"))
    raised = [f"{name} {n:,}" for name, n in sorted(s.worker_errors.items())]
    table.add_row(
        "worker errors", Packed(raised, "bold red") if raised else Text("none", style="green")
    )
    if s.harness_errors:
        table.add_row(
            "retried",
            Text(
                f"{errors(s.harness_errors)} in heartbeats and job re-reads",
                style="yellow",
            ),
        )
    return Panel(table, title="External APIs (ledger) & emails", title_align="left")
