"""``python -m harness grade``: one grading pass, the board printed once."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import click

from .app import App
from .board import render_board
from .options import db_option, seed_option, solution_option, task_letters
from .pipeline import Scoreboard
from .results import GradeRun
from .runner import GradeRequest, run_grading


@click.command(short_help="Grade the solution once and print the board.")
@solution_option
@db_option
@click.option("--tier", type=click.Choice(["fast", "full"]), default="full", show_default=True,
              help="fast: small loads, an answer in seconds; full: the real bar.")
@click.option("--task", "tasks", callback=task_letters,
              help="Grade only these tasks, e.g. A or BC.")
@seed_option
@click.option("--timeout", type=click.FloatRange(min=1),
              help="Stop the run after this many seconds.")
@click.pass_obj
def grade(app: App, solution_path: Path | None, db_url: str | None, tier: str, tasks: str,
          seed: int, timeout: float | None) -> None:
    """Grade the solution in a subprocess, print the board, and exit with status 0 only when
    every task passes."""
    request = GradeRequest(solution=app.solution_path(solution_path), db_url=db_url, tier=tier,
                           tasks=tasks, seed=seed, timeout=timeout)
    run = GradeRun(request)
    scoreboard = Scoreboard(request.backend, app.progress)
    scoreboard.add(run)
    if app.terminal.is_interactive:
        with app.terminal.console.status(f"grading the {tier} tier on {request.backend}…"):
            asyncio.run(run_grading(request, run=run))
    else:
        asyncio.run(run_grading(request, run=run))
    scoreboard.record(run)

    state = app.board_state(request)
    state.tasks = {task: row for task, row in scoreboard.rows().items()
                   if not tasks or task in tasks}
    state.runs = scoreboard.run_lines(time.monotonic())
    state.notice = run.message if run.state != "done" else None
    state.output, state.output_dropped = list(run.output.lines), run.output.dropped
    app.terminal.print(render_board(state))
    if not run.all_passing:
        raise SystemExit(1)
