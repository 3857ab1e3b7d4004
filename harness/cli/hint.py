"""``python -m harness hint A``: the next level of a task's hint."""

from __future__ import annotations

import click
from rich.rule import Rule

from ..tasks import FUNCTIONS
from .app import App
from .code import CodeMarkdown
from .hints import LEVEL_NAMES, LEVELS
from .hints import hint as hint_for


@click.command(short_help="Show the next hint for a task.")
@click.argument("task", type=click.Choice(list(FUNCTIONS), case_sensitive=False))
@click.option(
    "--level",
    type=click.IntRange(1, LEVELS),
    help=f"Show this level (1 to {LEVELS}) instead of the next one.",
)
@click.pass_obj
def hint(app: App, task: str, level: int | None) -> None:
    """Each call shows the next level: a nudge, then the concept, then the shape of the code."""
    task = task.upper()
    level = level or min(app.progress.hint_level(task) + 1, LEVELS)
    app.progress.see_hint(task, level)
    shown = hint_for(task, level)
    # No panel around it: a panel is as wide as the terminal, and would cut the code's lines.
    app.terminal.print(
        Rule(
            f"Task {task} · {FUNCTIONS[task]}() · hint {level} of {LEVELS}: {shown.name}",
            align="left",
            style="cyan",
        )
    )
    app.terminal.print_whole(CodeMarkdown(shown.text))
    if level < LEVELS:
        app.terminal.info(
            f"Still stuck? `python -m harness hint {task}` again shows {LEVEL_NAMES[level]}."
        )
    else:
        app.terminal.info(
            "That is the last level. Once the task passes, "
            f"`python -m harness solution {task}` shows the reference."
        )
