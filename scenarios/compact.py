"""The drill board for a terminal too short for the whole one (80x24): its figures, fewer lines.

Two columns, each one box of titled sections (a section's title is drawn on the line that parts it
from the one above, so that a section costs one line of frame, not two): the queue, the latency
and the workers on the left; the throughput, the pool and the APIs on the right. Figures are
written short (``389ms``), the workers' states two to a line, the lease with the workers, the
retried PoolTimeouts once (the pool's split of its PoolTimeouts), and one legend line under the
board says what the short forms mean.

What it leaves out, all of it on the full board (``--replay`` in a taller terminal) or in the
plain summary (``--replay | cat``): the bars beside the workers' states, the strip's workers past
one line, who the pool's callers are (the bound on them stays), the words around the figures.
"""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console, ConsoleOptions, Group, RenderableType, RenderResult
from rich.measure import Measurement
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

from .figures import (
    API_ERROR_NAMES,
    OPERATION_NAMES,
    Packed,
    bar,
    operation_order,
    seconds,
    sparkline,
)
from .snapshot import RECENT, STATES, Snapshot

__all__ = ["LEGEND", "render_compact"]

#: The short forms of the compact board, said once under it.
LEGEND = "(n): the run's average · lock: SQL > 50 ms · capacity = workers ÷ API time/job"
#: Each state's letter (the strip draws one per worker), short name and colour.
_STATES = {
    "waiting on a lock": ("L", "lock", "bold red"),
    "in an API call": ("A", "API", "yellow"),
    "claiming": ("C", "claim", "cyan"),
    "processing": ("P", "work", "green"),
    "idle": ("·", "idle", "dim"),
    "stopped": ("x", "stop", "dim red"),
}
_STATUS_STYLE = {"pending": "yellow", "running": "cyan", "completed": "green", "failed": "red"}
_LATENCY_ROWS = {
    "claim": "claim",
    "send_email": "send_email step",
    "analyze": "analyze step",
    "take_action": "take_action step",
    "all steps": "all steps",
}
_SLOW_CLAIM = 0.25
_SLOW_STEP = 1.0


#: How hard the compact board squeezes: ``render_compact(s, squeeze=n)`` for n in this range.
SQUEEZES = range(3)


def render_compact(s: Snapshot, *, squeeze: int = 0) -> RenderableType:
    """The board in 24 lines at 80 columns (wider, each column is wider). ``squeeze`` 1 gives up
    the legend, 2 also the latency's header row (its title names the columns), the workers'
    strip, and draws the errors across the whole width under the boxes: for the rare run with
    many kinds of error at once."""
    tight = squeeze >= 2
    latency = "Latency: p50 p95 p99" if tight else "Latency (claim; each step)"
    left = _Sections(
        [
            (f"Queue ({s.jobs:,} jobs in the db)", _queue(s)),
            (latency, _latency(s, header=not tight)),
            (f"Workers ({s.workers}): now (avg)", _workers(s, strip=not tight)),
        ]
    )
    right = _Sections(
        [
            ("Throughput (jobs done or failed)", _throughput(s)),
            (f"Pool & txns: {s.round_trips:,} round trips", _pool(s)),
            ("External APIs (ledger) & emails", _apis(s, errors=not tight)),
        ]
    )
    grid = Table.grid(expand=True, padding=(0, 1))
    grid.add_column(ratio=1)
    grid.add_column(ratio=1)
    grid.add_row(left, right)
    if tight:
        return Group(_header(s), grid, _errors_across(s))
    if squeeze:
        return Group(_header(s), grid)
    return Group(_header(s), grid, Text(LEGEND, style="dim", no_wrap=True, overflow="ellipsis"))


@dataclass(frozen=True)
class _Sections:
    """One box around titled sections: ``╭─ first ─╮``, ``├─ next ─┤``, ..., ``╰─╯``."""

    sections: list[tuple[str, RenderableType]]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        inner = options.update(width=width - 4, height=None)
        for i, (title, body) in enumerate(self.sections):
            corners = ("╭", "╮") if i == 0 else ("├", "┤")
            label = Text(f" {title} ")
            label.truncate(width - 4, overflow="ellipsis")
            rest = width - 3 - label.cell_len
            yield Segment(f"{corners[0]}─")
            yield from label.render(console)
            yield Segment("─" * rest + corners[1] + "\n")
            for line in console.render_lines(body, inner, pad=True):
                yield Segment("│ ")
                yield from line
                yield Segment(" │\n")
        yield Segment("╰" + "─" * (width - 2) + "╯\n")


# -- the sections ----------------------------------------------------------------------------------


def _header(s: Snapshot) -> Group:
    progress = min(1.0, s.elapsed / s.duration) if s.duration else 1.0
    title = Text(no_wrap=True, overflow="ellipsis")
    title.append(f" INCIDENT {s.scenario} ", style="bold white on red")
    title.append(f" {s.title}", style="bold")
    where = Text(no_wrap=True, overflow="ellipsis")
    where.append(f"{s.variant}", style="bold magenta")
    where.append(f" {min(s.elapsed, s.duration):4.1f}/{s.duration:g} s ")
    where.append(bar(progress, 10), style="blue")
    where.append(
        " stopped" if s.finished else " running", style="green" if s.finished else "yellow"
    )
    where.append(f" · {s.database}", style="dim")
    return Group(title, where)


def _grid(*widths: int) -> Table:
    """A borderless table whose columns never wrap; the last one takes what is left."""
    table = Table.grid(padding=(0, 1))
    for width in widths:
        table.add_column(min_width=width, no_wrap=True)
    table.add_column()
    return table


def _queue(s: Snapshot) -> Table:
    table = Table.grid(padding=(0, 1), expand=True)
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(ratio=1, no_wrap=True)
    for status in ("pending", "running", "completed", "failed"):
        n = s.counts.get(status, 0)
        share = n / s.jobs if s.jobs else 0.0
        table.add_row(status, f"{n:,}", _Bar(share, _STATUS_STYLE[status]))
    return table


def _latency(s: Snapshot, *, header: bool = True) -> Table:
    table = Table(
        box=None,
        padding=(0, 0, 0, 1),
        pad_edge=False,
        show_edge=False,
        expand=True,
        show_header=header,
    )
    table.add_column("", no_wrap=True)
    for name in ("p50", "p95", "p99"):
        table.add_column(name, justify="right", no_wrap=True)
    for name, label in _LATENCY_ROWS.items():
        row = s.latency.get(name)
        if row is None or not row["n"]:
            table.add_row(label, "-", "-", "-", style="dim")
            continue
        slow = _SLOW_CLAIM if name == "claim" else _SLOW_STEP
        table.add_row(
            label,
            _short(row["p50"]),
            _short(row["p95"]),
            Text(_short(row["p99"]), style="bold red" if row["p99"] >= slow else ""),
            style="bold" if name == "all steps" else None,
        )
    return table


def _workers(s: Snapshot, *, strip: bool = True) -> Group:
    table = Table.grid(padding=(0, 1))
    for _ in range(2):
        table.add_column(no_wrap=True)
        table.add_column(justify="right", no_wrap=True)
        table.add_column(no_wrap=True)
    cells: list[RenderableType] = []
    for state in STATES:
        n = s.states.get(state, 0)
        letter, name, style = _STATES[state]
        cells += [
            Text(f"{letter} {name}", style=style if n else "dim"),
            str(n),
            Text(f"({s.states_avg.get(state, 0.0):.1f})", style="dim"),
        ]
    for row in range(0, len(cells), 6):
        table.add_row(*cells[row : row + 6])
    lines: list[RenderableType] = [table]
    if strip:  # one letter a worker: as many as the line holds
        drawn = Text(no_wrap=True, overflow="crop")
        for view in s.worker_views:
            letter, _, style = _STATES[view.state]
            drawn.append(letter, style=style)
        lines.append(drawn)
    waits = [v for v in s.worker_views if v.state == "waiting on a lock"]
    longest = max(waits, key=lambda v: v.waited, default=None)
    if longest is not None:  # the figure first: the statement's name is what a narrow line cuts
        statement = longest.detail.rsplit(" ", 1)[0]
        lines.append(
            _line(f"longest {longest.waited:.1f}s: {longest.name} in {statement}", style="dim")
        )
    lines.append(_line(f"lease {s.lease:g}s, heartbeat {'on' if s.heartbeat else 'off'}"))
    lines.append(
        _line(
            f"{s.recoveries:,} jobs handed to a second worker",
            style="bold red" if s.recoveries else "green",
        )
    )
    top = s.most_crashed
    if top is not None:  # only a run whose workers died: the others keep their 24 lines
        who = "all" if top.crashes == s.crashes else f"{top.crashes:,}"
        failed = " (failed)" if top.given_up else ""
        lines.append(
            _line(f"{s.crashes:,} died, {who} running job {top.job_id}{failed}", style="bold red")
        )
    return Group(*lines)


def _throughput(s: Snapshot) -> Group:
    table = _grid(8)
    if s.capacity and s.api_seconds_per_job:
        share = s.throughput_avg / s.capacity
        table.add_row(
            "average",
            Text(f"{s.throughput_avg:,.0f}/min · ")
            + Text(f"{share:.0%}", style="bold red" if share < 0.25 else "green")
            + Text(" of capacity"),
        )
        per_job = _short(s.api_seconds_per_job)
        table.add_row("capacity", f"{s.capacity:,.0f}/min = {s.workers} ÷ {per_job}")
    else:
        table.add_row("average", f"{s.throughput_avg:,.0f}/min")
        table.add_row("capacity", "… (after a job's API calls)")
    peak = max(s.series, default=0.0)
    figures = f" last {RECENT:g}s {s.throughput_now:,.0f} · peak {peak:,.0f}"
    return Group(table, _Trend(s.series, figures))


def _pool(s: Snapshot) -> Table:
    pool = s.pool
    table = _grid(8)
    in_use = pool.in_use / pool.max_size if pool.max_size else 0.0
    table.add_row(
        "in use",
        Text(f"{pool.in_use}/{pool.max_size} ")
        + Text(bar(in_use, 8), style="red" if in_use >= 1 else "green")
        + Text(f" full {s.pool_saturated_share:.0%}", style="dim"),
    )
    table.add_row(
        "waiting", f"{pool.waiting} now · peak {s.pool_peak_waiting} of {s.callers_bound}"
    )
    table.add_row("wait", f"mean {_short(pool.mean_wait)} · max {_short(pool.max_wait)}")
    table.add_row(
        "timeouts",
        Text(f"{pool.timeouts:,}", style="bold red" if pool.timeouts else "green")
        + Text(_timeouts_split(s), style="dim"),
    )
    table.add_row("txn", f"{s.transactions_open} open · oldest {_short(s.oldest_transaction)}")
    table.add_row(
        "",
        Text(
            f"(max {_short(s.oldest_transaction_max)})",
            style="bold red" if s.oldest_transaction_max >= 0.05 else "dim",
        ),
    )
    return table


def _apis(s: Snapshot, *, errors: bool = True) -> Table:
    """The API calls, their errors and the emails; then what the workers raised, and what was
    retried for them but PoolTimeouts (the pool's section counts those). Without ``errors``,
    the errors are left to ``_errors_across``."""
    table = _grid(8)
    calls = [
        f"{OPERATION_NAMES.get(op, op)} {n:,}"
        for op, n in sorted(s.api_calls.items(), key=lambda item: operation_order(item[0]))
    ]
    table.add_row("calls", Packed(calls) if calls else Text("none yet"))
    table.add_row(
        "",
        Text(f"{s.api_in_flight} in flight · ")
        + Text(
            f"{s.calls_in_transaction:,} in a txn",
            style="bold red" if s.calls_in_transaction else "green",
        ),
    )
    if errors:
        failed = _api_errors(s)
        table.add_row("errors", Packed(failed, "red") if failed else Text("none", style="green"))
    table.add_row("emails", f"{s.delivered:,} delivered")
    table.add_row(
        "",
        Text(
            f"{s.duplicate_copies:,} duplicate copies to {s.duplicated_recipients:,}",
            style="bold red" if s.duplicate_copies else "green",
        ),
    )
    if not errors:
        return table
    raised = _raised(s)
    table.add_row("raised", Packed(raised, "bold red") if raised else Text("none", style="green"))
    retried = _others(s.harness_errors)
    if retried:
        table.add_row("retried", Packed(retried, "yellow"))
    return table


def _errors_across(s: Snapshot) -> Table:
    """The API's errors, the workers' and those retried for them, under both columns."""
    table = _grid(10)
    table.add_row("API errors", Packed(_api_errors(s), "red"))
    table.add_row("raised", Packed(_raised(s) or ["none"], "bold red"))
    if _others(s.harness_errors):
        table.add_row("retried", Packed(_others(s.harness_errors), "yellow"))
    return table


# -- small pieces ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Trend:
    """The throughput's sparkline, its most recent samples as many as fit, then its peak."""

    series: list[float]
    peak: str

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        room = max(0, options.max_width - len(self.peak))
        yield Text(sparkline(self.series[-room:] if room else []), style="cyan", end="") + Text(
            self.peak, style="dim"
        )


@dataclass(frozen=True)
class _Bar:
    """A share drawn as a bar as wide as the room it is given."""

    share: float
    style: str

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield Text(bar(self.share, options.max_width), style=self.style, end="")

    def __rich_measure__(self, console: Console, options: ConsoleOptions) -> Measurement:
        return Measurement(1, options.max_width)


def _short(value: float | None) -> str:
    """``389ms``, ``1.31s``: a figure and its unit without the space, so neither wraps alone."""
    return seconds(value).replace(" ", "")


def _line(text: str, style: str = "") -> Text:
    return Text(text, style=style, no_wrap=True, overflow="ellipsis")


def _api_errors(s: Snapshot) -> list[str]:
    return [f"{API_ERROR_NAMES.get(name, name)} {n:,}" for name, n in sorted(s.api_errors.items())]


def _raised(s: Snapshot) -> list[str]:
    return [f"{name} {n:,}" for name, n in sorted(s.worker_errors.items())]


def _others(by_type: dict[str, int]) -> list[str]:
    """Errors by type but PoolTimeouts: ``["OperationalError 9"]``."""
    return [f"{name} {n:,}" for name, n in sorted(by_type.items()) if name != "PoolTimeout"]


def _timeouts_split(s: Snapshot) -> str:
    total = s.pool.timeouts
    raised = s.worker_errors.get("PoolTimeout", 0)
    retried = s.harness_errors.get("PoolTimeout", 0)
    if not total:
        return ""
    if raised == total:
        return " (all raised)"
    parts = [f"{raised:,} raised", f"{retried:,} retried"]
    if total - raised - retried > 0:
        parts.append(f"{total - raised - retried:,} caught")
    return " = " + " + ".join(parts)
