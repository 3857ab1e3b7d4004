"""``python -m harness``: the candidate's command line.

The root group builds one ``App`` into ``ctx.obj``; each command is a small function in its own
module; all output goes through ``App.terminal``.

    python -m harness dev          watch candidate/solution.py and keep the board up to date
    python -m harness grade        grade once and print the board
    python -m harness hint A       the next hint for task A
    python -m harness reset A      put claim_next_job back to its stub (a backup is kept)
    python -m harness solution A   the reference's Task A, once you have passed it
    python -m harness status       your progress
    python -m harness sessions     the recorded sessions
    python -m harness report       a session as one page, to read after the hour
"""

from __future__ import annotations

import click

from .app import App
from .dev import dev
from .grade import grade
from .hint import hint
from .report import report
from .reset import reset
from .sessions import sessions
from .solution import solution
from .status import status

__all__ = ["App", "main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.pass_context
def main(ctx: click.Context) -> None:
    """The campaign-jobs kata: edit candidate/solution.py; the board tells you how it does."""
    ctx.obj = App(command=ctx.invoked_subcommand or "")


for command in (dev, grade, hint, report, reset, sessions, solution, status):
    main.add_command(command)
