"""``python -m harness status``: the candidate's progress, per task."""

from __future__ import annotations

from datetime import datetime

import click
from rich import box
from rich.table import Table
from rich.text import Text

from ..sql.orm import utcnow
from ..tasks import STRETCH, WRITTEN, TaskStatus, title
from .app import App
from .hints import LEVELS
from .interview import EndedInterview, clock, last_interview, minutes, summary

#: What the status column is, said under it and after a reset: it is not the file as it is now.
LAST_GRADING_NOTE = (
    "Each status is the last grading's: a task reset or edited since shows its new status once "
    "`python -m harness grade`, `dev` or `pytest` grades it again."
)

_STYLES: dict[str, str] = {
    TaskStatus.PASSING: "green",
    TaskStatus.FAILING: "red",
    TaskStatus.NOT_STARTED: "yellow",
}


@click.command(short_help="Show your progress: status, first pass and hints used, per task.")
@click.pass_obj
def status(app: App) -> None:
    """Per task: what the last grading said, when it first passed the full tier (and on which
    backends), and how many hint levels you have seen. A task reset or edited since keeps the
    last grading's status until it is graded again."""
    progress = app.progress
    table = Table(box=box.SIMPLE_HEAD, title="Your progress", title_justify="left")
    for column in ("task", "last grading", "first passed", "backends", "hints"):
        table.add_column(column)
    for task, info in progress.tasks.items():
        last = info.last_status or "not graded"
        style = _STYLES.get(last, "dim")
        hints = f"{info.hint_level}/{LEVELS}" if task in WRITTEN else ""
        table.add_row(
            f"{task}  {title(task)}" + (" (stretch)" if task in STRETCH else ""),
            Text(last, style=style),
            _when(info.first_passed),
            ", ".join(info.backends),
            hints,
        )
    app.terminal.print(table)
    app.terminal.info(LAST_GRADING_NOTE)
    if progress.interview is not None:
        now = clock(progress.interview.started_at, utcnow())
        state = "time is up" if now.finished else f"{now.part_name}, {minutes(now.total_left)} left"
        app.terminal.info(
            f"Interview in progress: started {_when(progress.interview.started)} ({state})."
        )
    elif (ended := last_interview(app.interviews_path)) is not None:
        app.terminal.info(_ended(ended))
    app.terminal.info(f"Progress file: {app.progress_path}")


def _ended(interview: EndedInterview) -> str:
    passed = [
        f"{line.task} at {minutes(line.passed_after)} ({line.part})"
        for line in summary(interview)
        if line.passed_after is not None
    ]
    return (
        f"Last interview: started {_when(interview.started)}, ended after "
        f"{minutes(interview.length)} ({interview.why}); passed: "
        f"{', '.join(passed) or 'none'}. `python -m harness dev --interview` starts a new one."
    )


def _when(iso: str | None) -> str:
    if iso is None:
        return "—"
    return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
