"""``python -m harness dev``: the watch loop (see ``session``)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import click

from .app import SECOND_DB_ENV, App
from .board import KEYS
from .grading_process import GradeRequest
from .options import DB_HELP, database_url, db_option, seed_option, solution_option
from .session import DevSession

#: The board's keys, from the board itself, so that `dev -h` lists every key the board shows.
KEYS_HELP = (
    "Keys: "
    + ", ".join(f"{key} {meaning}" for key, meaning in KEYS)
    + ". A hint, a timeline or a solution takes the screen: the arrows, PgUp/PgDn and j/k "
    "scroll it, q or Esc go back; in a race's timeline, c shows the replay command on a line of "
    "its own (and puts it on the clipboard where the terminal allows)."
)


@click.command(
    short_help="Watch the solution and re-grade it on every save.",
    help="Watch the solution: every save re-grades it (the fast tier, then the full tier) in a "
    f"subprocess and redraws the board.\n\n{KEYS_HELP}",
)
@solution_option
@db_option
@click.option(
    "--second-db",
    "second_db",
    metavar="DB",
    envvar=SECOND_DB_ENV,
    callback=database_url,
    help=f"Also grade passing tasks on this database: {DB_HELP} (or ${SECOND_DB_ENV}).",
)
@click.option(
    "--interview",
    is_flag=True,
    help="The 60-minute interview: design 15, implement 25, debug 15, wrap up 5.",
)
@click.option(
    "--poll",
    "force_polling",
    is_flag=True,
    help="Poll the file instead of watching it (network drives, odd file systems).",
)
@seed_option
@click.option(
    "--test-timeout",
    type=click.FloatRange(min=1),
    metavar="SECONDS",
    help="Stop a run when no test finishes for this long (fast tier default: 30).",
)
@click.pass_obj
def dev(
    app: App,
    solution_path: Path | None,
    db_url: str | None,
    second_db: str | None,
    interview: bool,
    force_polling: bool,
    seed: int,
    test_timeout: float | None,
) -> None:
    request = GradeRequest(
        solution=app.solution_path(solution_path),
        db_url=db_url,
        seed=seed,
        test_timeout=test_timeout,
    )
    session = DevSession(
        app, request, second_db=second_db or None, interview=interview, force_polling=force_polling
    )
    asyncio.run(session.run())
