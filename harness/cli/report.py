"""``python -m harness report``: a recorded session as one page to read after the hour."""

from __future__ import annotations

from pathlib import Path

import click

from ..record.analysis import summarize
from ..record.history import load
from ..record.store import Store
from .app import App

#: Where the page goes unless --output says otherwise: the kata home.
_DEFAULT_NAME = "session-{id}.{suffix}"


@click.command(short_help="Write the report of a recorded session (HTML, or Markdown).")
@click.option(
    "--session", "session_id", type=int, metavar="ID", help="The session (default: the last)."
)
@click.option(
    "--compare",
    "compare",
    type=int,
    nargs=2,
    metavar="ID ID",
    help="Two sessions side by side (a candidate's progress over a week).",
)
@click.option(
    "--format",
    "form",
    type=click.Choice(["html", "md"]),
    default="html",
    show_default=True,
    help="One self-contained HTML page with charts, or Markdown.",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Where to write it (default: session-ID.html in the kata home).",
)
@click.pass_obj
def report(
    app: App,
    session_id: int | None,
    compare: tuple[int, int] | None,
    form: str,
    output: Path | None,
) -> None:
    """The hour as recorded: each task's state over time and the interview's parts behind it,
    time to first attempt and to the full-tier pass against the guide's times, the mistakes met
    and how many saves each took to fix, hints, drills, design notes, the final code, and what
    the session shows of each concept the interview looks for. `python -m harness sessions`
    lists the sessions."""
    if form == "html":
        from ..record.report_html import render, render_compare
    else:
        from ..record.report_md import render, render_compare
    store = Store.in_home(app.home)
    try:
        if compare:
            a, b = (summarize(load(store, number)) for number in compare)
            page, name = render_compare(a, b), f"{a.id}-vs-{b.id}"
        else:
            summary = summarize(load(store, session_id))
            page, name = render(summary), str(summary.id)
    except LookupError as error:
        app.terminal.error(f"{error}: `python -m harness sessions` lists the recorded ones.")
        raise SystemExit(2) from error
    path = output or app.home / _DEFAULT_NAME.format(id=name, suffix=form)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(page, encoding="utf-8")
    app.terminal.success(f"The report is in {path}")
