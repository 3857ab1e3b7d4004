"""``python -m harness reset A``: put a task's function back to its stub, keeping a backup."""

from __future__ import annotations

import os
from pathlib import Path

import click

from ..tasks import FUNCTIONS
from .app import App
from .options import solution_option
from .sources import PRISTINE_PATH, restore_function
from .status import LAST_GRADING_NOTE


@click.command(short_help="Restore a task's stub (or the whole file); a backup is kept.")
@click.argument("target", type=click.Choice([*FUNCTIONS, "all"], case_sensitive=False))
@solution_option
@click.pass_obj
def reset(app: App, target: str, solution_path: Path | None) -> None:
    """Put TARGET's function (A, B, C or D) back to the stub it started as, or the whole file
    with `all`. The current file is copied to .kata/backups/ first."""
    path = app.solution_path(solution_path)
    target = target.upper() if target.lower() != "all" else "all"
    pristine = PRISTINE_PATH.read_text()
    backup = app.backup(path, target)
    if target == "all":
        restored, what = pristine, f"{path.name} is back to the stubs it started as"
    else:
        function = FUNCTIONS[target]
        restored = restore_function(path.read_text(), pristine, function)
        what = f"Task {target}: {function}() is back to its stub; the rest of the file is untouched"
    _write_atomically(path, restored)
    app.terminal.success(what + ".")
    app.terminal.info(f"Your previous version is in {backup}")
    app.terminal.info(LAST_GRADING_NOTE)


def _write_atomically(path: Path, text: str) -> None:
    """Write then rename, so that a watcher never grades half a file."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.reset")
    temporary.write_text(text)
    os.replace(temporary, path)
