"""``python -m harness solution A``: the reference's code for a task the candidate has passed."""

from __future__ import annotations

import click

from ..tasks import FUNCTIONS
from .app import App
from .code import whole_code
from .sources import reference_header, reference_section


@click.command(short_help="Show the reference solution of a task you have passed.")
@click.argument("task", type=click.Choice(list(FUNCTIONS), case_sensitive=False))
@click.option("--force", is_flag=True, help="Show it even though the task has not passed yet.")
@click.pass_obj
def solution(app: App, task: str, force: bool) -> None:
    """The reference's TASK: how a strong senior engineer solves it. Shown once the task has
    passed the full tier, so that it teaches instead of spoiling."""
    task = task.upper()
    if not force and not app.progress.passed(task):
        app.terminal.error(
            f"Task {task} has not passed the full tier yet, so its reference stays hidden. "
            f"Try `python -m harness hint {task}`, or add --force to see it anyway."
        )
        raise SystemExit(1)
    reference = app.reference_text()
    code = reference_header(reference) + "\n\n" + reference_section(reference, task)
    app.terminal.print_whole(whole_code(code))
    app.terminal.info(f"(the reference's {FUNCTIONS[task]}(), with the file's header for context)")
