"""``python -m harness sessions``: the recorded sessions, for ``report --session ID``."""

from __future__ import annotations

from datetime import datetime

import click
from rich import box
from rich.table import Table

from ..record.analysis import clock
from ..record.history import sessions as recorded
from ..record.store import Store
from .app import App


@click.command(short_help="List the recorded sessions (for report --session ID).")
@click.pass_obj
def sessions(app: App) -> None:
    """Every session the kata home recorded: dev windows, and the grade, pytest, hint and drill
    runs made while no dev was running."""
    store = Store.in_home(app.home)
    found = recorded(store) if store.path.exists() else []
    if not found:
        app.terminal.info("No session recorded yet: `python -m harness dev` records one.")
        return
    table = Table(box=box.SIMPLE_HEAD)
    for column in ("id", "started", "length", "kind", "saves", "events", "state"):
        table.add_column(column, justify="right" if column in ("id", "saves", "events") else "left")
    for info in found:
        state = "running" if info.running else ("quit" if info.ended else "left open")
        table.add_row(
            str(info.id),
            datetime.fromtimestamp(info.started).strftime("%Y-%m-%d %H:%M"),
            clock(info.until - info.started),
            "interview" if info.interview else info.kind,
            str(info.saves),
            str(info.events),
            state,
        )
    app.terminal.print(table)
    app.terminal.info("`python -m harness report --session ID` writes one as a page.")
