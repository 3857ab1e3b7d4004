"""Options shared by the commands that grade."""

from __future__ import annotations

from pathlib import Path

import click

from ..sql.config import DatabaseConfig, resolve_database_url
from ..tasks import LETTERS

__all__ = [
    "DB_HELP",
    "database_url",
    "db_option",
    "given",
    "seed_option",
    "solution_option",
    "task_letters",
]

solution_option = click.option(
    "--solution",
    "solution_path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The solution file (default: candidate/solution.py).",
)

#: What every option that names a database accepts (``resolve_database_url`` reads it).
DB_HELP = "sqlite, postgresql or a database URL"


def database_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A ``--db``-like option's value as a checked URL; None when not given. The value as typed
    stays in ``ctx.meta`` (see ``given``), for a re-run hint in the user's own words."""
    if not value:
        return None
    ctx.meta[_given_key(param.name)] = value
    try:
        return DatabaseConfig(url=resolve_database_url(value)).url
    except ValueError as error:
        raise click.BadParameter(f"{error}; or name a backend: sqlite, postgresql") from error


def given(ctx: click.Context, name: str) -> str | None:
    """What the user typed for the ``--db``-like parameter ``name``, if anything."""
    value = ctx.meta.get(_given_key(name))
    return str(value) if value else None


def _given_key(name: str | None) -> str:
    return f"harness.given.{name}"


db_option = click.option(
    "--db",
    "db_url",
    metavar="DB",
    callback=database_url,
    help=f"{DB_HELP} (default: DATABASE_URL, else SQLite). Every test gets a fresh database.",
)
seed_option = click.option(
    "--seed", type=int, default=1, show_default=True, help="Seed for the grader's faults and data."
)


def task_letters(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    letters = (value or "").upper()
    if any(letter not in LETTERS for letter in letters):
        raise click.BadParameter("tasks are letters among A, B, C, D and E, e.g. A or BC")
    return letters
