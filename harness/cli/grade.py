"""``python -m harness grade``: one grading pass, the board printed once."""

from __future__ import annotations

import asyncio
import shlex
import time
from pathlib import Path

import click
from rich.text import Text

from ..tasks import CORE, STRETCH, TaskStatus
from .app import App
from .board import render_board
from .grading_process import GradeRequest, run_grading
from .options import db_option, given, seed_option, solution_option, task_letters
from .pipeline import Scoreboard
from .results import GradeRun


@click.command(short_help="Grade the solution once and print the board.")
@solution_option
@db_option
@click.option(
    "--tier",
    type=click.Choice(["fast", "full"]),
    default="full",
    show_default=True,
    help="fast: small loads, an answer in seconds; full: the real bar.",
)
@click.option(
    "--task", "tasks", callback=task_letters, help="Grade only these tasks, e.g. A or BC."
)
@seed_option
@click.option(
    "--timeout", type=click.FloatRange(min=1), help="Stop the run after this many seconds."
)
@click.pass_context
def grade(
    ctx: click.Context,
    solution_path: Path | None,
    db_url: str | None,
    tier: str,
    tasks: str,
    seed: int,
    timeout: float | None,
) -> None:
    """Grade the solution in a subprocess, print the board, and exit with status 0 only when
    every task passes."""
    app: App = ctx.obj
    request = GradeRequest(
        solution=app.solution_path(solution_path),
        db_url=db_url,
        tier=tier,
        tasks=tasks,
        seed=seed,
        timeout=timeout,
    )
    run = GradeRun(request)
    scoreboard = Scoreboard(request.backend, app.progress_for(request.solution))
    scoreboard.add(run)
    if app.terminal.is_interactive:
        with app.terminal.console.status(f"grading the {tier} tier on {request.backend}…"):
            asyncio.run(run_grading(request, run=run))
    else:
        asyncio.run(run_grading(request, run=run))
    scoreboard.record(run)

    state = app.board_state(request)
    state.tasks = {
        task: row for task, row in scoreboard.rows().items() if not tasks or task in tasks
    }
    state.runs = scoreboard.run_lines(time.monotonic())
    state.notice = run.message if run.state != "done" else None
    state.output, state.output_dropped = list(run.output.lines), run.output.dropped
    app.terminal.print(render_board(state))
    again = ["python", "-m", "harness", "grade"]
    if solution_path is not None:
        again += ["--solution", str(solution_path)]
    if db_url is not None:
        again += ["--db", given(ctx, "db_url") or db_url]
    if tier != "full":
        again += ["--tier", tier]
    if tasks:
        again += ["--task", tasks]
    again += ["--seed", str(seed)]
    if timeout is not None:
        again += ["--timeout", f"{timeout:g}"]
    app.terminal.command("re-run", shlex.join(again))
    app.terminal.print(verdict(run))  # last: what a glance at the end of the output must see
    if not run.all_passing:
        raise SystemExit(1)


def verdict(run: GradeRun) -> Text:
    """The run's outcome in one line of at most 80 columns: passing or not, with the counts."""
    tallies = {
        task: tally
        for task, tally in run.tallies().items()
        # A stretch task left as the stub is not part of the verdict, nor of its counts.
        if task not in STRETCH or tally.status != TaskStatus.NOT_STARTED
    }
    passed = sum(tally.passed for tally in tallies.values())
    total = sum(tally.passed + tally.failed for tally in tallies.values())
    where = f"{run.tier} tier on {run.backend}, {run.elapsed():.1f} s"
    if run.all_passing:
        return Text(
            f"✔ passing: {_which(sorted(tallies))} · {_tests(passed, total)} · {where}",
            style="bold green",
        )
    by_status: dict[str, list[str]] = {}
    for task, tally in tallies.items():
        by_status.setdefault(tally.status, []).append(task)
    counts = ", ".join(
        f"{len(those)} {status} ({', '.join(those)})"
        for status in (TaskStatus.FAILING, TaskStatus.NOT_STARTED, TaskStatus.PASSING)
        if (those := by_status.get(status))
    )
    what = "failing" if run.state == "done" else run.state
    tests = _tests(passed, total) if total else "no test finished"
    return Text(f"✘ {what}: {counts or 'no task graded'} · {tests} · {where}", style="bold red")


def _which(tasks: list[str]) -> str:
    """The tasks a passing run graded: "every task (A to E)", "task A", "tasks B and C"."""
    if set(tasks) >= set(CORE):
        stretch = [task for task in tasks if task in STRETCH]
        also = f", and stretch {' and '.join(stretch)}" if stretch else ""
        return f"every task ({CORE[0]} to {CORE[-1]}{also})"
    if len(tasks) == 1:
        return f"task {tasks[0]}"
    return f"tasks {', '.join(tasks[:-1])} and {tasks[-1]}"


def _tests(passed: int, total: int) -> str:
    """How many tests passed of how many: "12/12 tests", "0/1 test"."""
    return f"{passed}/{total} {'test' if total == 1 else 'tests'}"
