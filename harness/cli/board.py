"""The board: what ``python -m harness dev`` keeps on screen and ``grade`` prints once.

``render_board(state)`` is a pure function of a ``BoardState``: no clocks, no I/O, so tests render
it into a capture console and read the text. Whoever owns the state (the dev session, the grade
command) fills it in; ``now`` travels in the state for the same reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from rich import box
from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from ..tasks import LETTERS, STRETCH, TaskStatus, title
from .code import CodeMarkdown, NotesCuts, whole_code, widest_line
from .interview import PARTS, InterviewClock, SummaryLine, minutes
from .pager import TimelineBody, body_rows, parse_timeline, render_pager

__all__ = [
    "KEYS",
    "STATUSES",
    "BoardPanel",
    "BoardState",
    "RunLine",
    "TaskRow",
    "panel_body",
    "render_board",
]

#: What a task can be, from nothing to everything.
STATUSES = (
    TaskStatus.NOT_GRADED,
    TaskStatus.NOT_STARTED,
    TaskStatus.FAILING,
    TaskStatus.PASSING,
    TaskStatus.PASSING_ON_BOTH,
)
KEYS = (
    ("h", "hint"),
    ("t", "timeline"),
    ("r", "re-run"),
    ("f", "full tier"),
    ("s", "solution"),
    ("q", "quit"),
)

_STYLE: dict[str, str] = {
    TaskStatus.NOT_GRADED: "dim",
    TaskStatus.NOT_STARTED: "yellow",
    TaskStatus.FAILING: "bold red",
    TaskStatus.PASSING: "bold green",
    TaskStatus.PASSING_ON_BOTH: "bold green",
}
_MARK: dict[str, str] = {
    TaskStatus.NOT_GRADED: "-",
    TaskStatus.NOT_STARTED: "·",
    TaskStatus.FAILING: "✘",
    TaskStatus.PASSING: "✔",
    TaskStatus.PASSING_ON_BOTH: "✔✔",
}
_RUN_MARK = {
    "running": "⋯",
    "done": "✔",
    "timed out": "⏱",
    "crashed": "✘",
    "cancelled": "↷",
    "waiting": " ",
}


@dataclass
class TaskRow:
    task: str
    status: str = TaskStatus.NOT_GRADED
    passed: int = 0
    total: int = 0
    diagnosis: str | None = None
    tier: str | None = None  # the tier that gave this status
    grading: bool = False  # being graded right now
    stale: bool = False  # from an earlier version of the file
    #: Not failures: what a senior reviewer would still point out (the grader's words).
    advice: list[str] = field(default_factory=list)
    #: The timeline behind the diagnosis, when it was a race (shown on a key: t).
    timeline: list[str] = field(default_factory=list)


@dataclass
class RunLine:
    """One grading pass of the current pipeline, as the board shows it."""

    tier: str
    backend: str
    state: str  # waiting | running | done | timed out | crashed | cancelled
    elapsed: float = 0.0
    done: int = 0
    total: int = 0
    current: str | None = None
    failed: int = 0  # tests that failed


@dataclass
class BoardPanel:
    """A hint, a reference solution or a race's timeline: the whole screen while it is open (a
    pager, see ``pager``), under the tasks when the board is printed."""

    title: str
    body: str
    kind: str = "markdown"  # markdown | python | text | timeline (the lines a grader drew)
    #: The keys that work while it is open, said in its bottom edge.
    keys: str = ""
    #: The first row of the body on the screen.
    offset: int = 0


@dataclass
class BoardState:
    solution: str
    backend: str
    second_backend: str | None = None
    watching: str | None = None  # None when not watching (the grade command)
    tasks: dict[str, TaskRow] = field(
        default_factory=lambda: {task: TaskRow(task) for task in LETTERS}
    )
    runs: list[RunLine] = field(default_factory=list)
    notice: str | None = None  # a syntax error, a timeout, a crash: said in red
    info: str | None = None  # anything else worth a line
    output: list[str] = field(default_factory=list)
    output_dropped: int = 0
    panel: BoardPanel | None = None
    interview: InterviewClock | None = None
    interview_summary: list[SummaryLine] | None = None
    interview_ended: str | None = None  # "ended after 38:00 (you quit)"
    keys: bool = True
    #: (columns, rows) of the screen the board fills, when it is drawn live; None when printed.
    screen: tuple[int, int] | None = None

    def first_failing(self) -> TaskRow | None:
        for row in self.tasks.values():
            if row.task in STRETCH and row.status != TaskStatus.FAILING:
                continue  # an optional task not started is nothing to fix
            if row.status in (TaskStatus.FAILING, TaskStatus.NOT_STARTED) and row.diagnosis:
                return row
        return None


def render_board(state: BoardState) -> RenderableType:
    if state.panel is not None and state.screen is not None:
        width, height = state.screen
        panel = state.panel
        return render_pager(
            panel.title,
            panel_body(panel, body_rows(height)),
            keys=panel.keys,
            offset=panel.offset,
            width=width,
            height=height,
        )
    parts: list[RenderableType] = [_header(state)]
    if state.keys:  # near the top: a long hint must never push the keys off the screen
        parts.append(_keys())
    if state.interview is not None:
        parts.append(_interview(state.interview))
    if state.interview_ended is not None:
        parts.append(Text(f"Interview {state.interview_ended}", style="bold magenta"))
    if state.interview_summary is not None:
        parts.append(_summary(state.interview_summary))
    parts.append(_tasks(state))
    failing = state.first_failing()
    if failing is not None:
        race = "t: the timeline of this race" if failing.timeline and state.keys else None
        parts.append(
            Panel(
                Text(failing.diagnosis or ""),
                border_style="red",
                box=box.ROUNDED,
                title=f"{failing.task} · {title(failing.task)}",
                title_align="left",
                subtitle=race,
                subtitle_align="right",
            )
        )
    parts += [_advice(row) for row in state.tasks.values() if row.advice]
    if state.runs:
        parts.append(_runs(state.runs))
    if state.notice and (failing is None or state.notice != failing.diagnosis):
        parts.append(Text(state.notice, style="bold red"))
    if state.info:
        parts.append(Text(state.info, style="cyan"))
    if state.panel is not None:
        parts.append(
            Panel(
                panel_body(state.panel),
                title=state.panel.title,
                title_align="left",
                border_style="cyan",
                box=box.ROUNDED,
            )
        )
    if state.output or state.output_dropped:
        parts.append(_output(state))
    return Group(*parts)


def panel_body(panel: BoardPanel, rows: int | None = None) -> RenderableType:
    """What ``panel`` shows, laid out for ``rows`` rows of screen (None: all of it, in order)."""
    if panel.kind == "timeline":
        events, _ = parse_timeline(panel.body.splitlines())
        return TimelineBody(events, rows)
    if panel.kind == "text":
        return Text(panel.body)
    if panel.kind == "python":
        return NotesCuts(whole_code(panel.body), widest_line(panel.body))
    markdown = CodeMarkdown(panel.body)
    return NotesCuts(markdown, markdown.widest_code)


def _advice(row: TaskRow) -> Panel:
    """The grader's advice, in its words (as pytest's scorecard shows it)."""
    return Panel(
        Text("\n".join(row.advice)),
        border_style="yellow",
        box=box.ROUNDED,
        title=f"{row.task} · {title(row.task)} · advice (not a failure)",
        title_align="left",
    )


def _header(state: BoardState) -> Text:
    text = Text()
    text.append("Campaign-jobs kata", style="bold")
    text.append(f" — {state.solution}\n")
    text.append(f"backend {state.backend}", style="dim")
    if state.second_backend:
        text.append(f" · second backend {state.second_backend}", style="dim")
    if state.watching:
        text.append(f"\n{state.watching}", style="dim")
    return text


def _tasks(state: BoardState) -> Table:
    table = Table(box=box.SIMPLE_HEAD, expand=True, show_edge=False, pad_edge=False)
    table.add_column("task", no_wrap=True)
    table.add_column("status")  # the one to wrap (at a word) when 80 columns are too few
    table.add_column("tests", justify="right", no_wrap=True)
    table.add_column("tier", no_wrap=True)
    rows = list(state.tasks.values())
    idle = [row for row in rows if row.task in STRETCH and _untouched(row)]
    if len(idle) > 1:
        # Optional tasks nobody started: one dim line, so that A to E keep the screen.
        rows = [row for row in rows if row not in idle]
    for row in rows:
        status = Text(f"{_MARK[row.status]} {row.status}", style=_STYLE[row.status])
        if row.stale:
            status.stylize("dim")
            status.append(" (earlier version)", style="dim")
        if row.grading:
            status.append("  grading…", style="cyan")
        tests = f"{row.passed}/{row.total}" if row.total else ""
        name = f"{row.task}  {title(row.task)}"
        if row.task in STRETCH:
            status.append(" (stretch)", style="dim")
        table.add_row(name, status, tests, row.tier or "")
    if len(idle) > 1:
        table.add_row(
            Text(" ".join(row.task for row in idle) + "  stretch tasks", style="dim"),
            Text("optional, not started", style="dim"),
            "",
            "",
        )
    return table


def _untouched(row: TaskRow) -> bool:
    """A stretch task the solution has not started (or that no run has graded yet)."""
    return row.status in (TaskStatus.NOT_STARTED, TaskStatus.NOT_GRADED, TaskStatus.NO_TESTS)


def _runs(runs: list[RunLine]) -> Text:
    text = Text()
    for index, run in enumerate(runs):
        if index:
            text.append("\n")
        label = f"{run.tier} tier on {run.backend}"
        if run.state == "waiting":
            text.append(f"{label}: next", style="dim")
            continue
        style = {"done": "green", "running": "cyan", "cancelled": "dim"}.get(run.state, "red")
        mark = _RUN_MARK.get(run.state, "")
        if run.state == "done" and run.failed:  # done, and what it found is failures
            style, mark = "red", "✘"
        text.append(f"{mark} {label}: ", style=style)
        if run.state == "running":
            progress = f" ({run.done}/{run.total} tests)" if run.total else ""
            text.append(f"grading {run.elapsed:.1f} s{progress}", style=style)
        elif run.state == "done" and run.failed:
            text.append(
                f"failing, {run.failed} of {run.total} tests failed (done in {run.elapsed:.1f} s)",
                style=style,
            )
        else:
            text.append(f"{run.state} in {run.elapsed:.1f} s", style=style)
    return text


def _interview(now: InterviewClock) -> Text:
    text = Text()
    if now.finished:
        text.append("Interview: time is up", style="bold magenta")
        return text
    text.append("Interview ", style="bold magenta")
    text.append(f"{now.part_name} ", style="bold")
    text.append(
        f"{minutes(now.part_left)} left in this part · {minutes(now.total_left)} left of 60 min\n"
    )
    for index, (name, length) in enumerate(PARTS):
        style = "bold reverse magenta" if index == now.part else ("dim" if index < now.part else "")
        text.append(f" {name} {length} ", style=style)
    return text


def _summary(lines: list[SummaryLine]) -> Table:
    table = Table(
        title="What passed, and when", title_justify="left", box=box.SIMPLE_HEAD, show_edge=False
    )
    table.add_column("task")
    table.add_column("passed the full tier")
    for line in lines:
        when = (
            f"at {minutes(line.passed_after)} ({line.part})"
            if line.passed_after is not None
            else "not passed"
        )
        table.add_row(
            f"{line.task}  {title(line.task)}",
            Text(when, style="green" if line.passed_after is not None else "dim"),
        )
    return table


def _output(state: BoardState) -> Panel:
    lines = list(state.output)
    title = "output of your code"
    if state.output_dropped:
        title += f" (output truncated: {state.output_dropped} earlier lines not shown)"
    return Panel(
        Text("\n".join(lines)), title=title, title_align="left", border_style="dim", box=box.ROUNDED
    )


def _keys() -> Text:
    text = Text()
    for index, (key, meaning) in enumerate(KEYS):
        if index:
            text.append("  ")
        text.append(f" {key} ", style="bold reverse")
        text.append(f" {meaning}")
    return text
