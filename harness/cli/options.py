"""Options shared by the commands that grade."""

from __future__ import annotations

from pathlib import Path

import click

from ..config import DatabaseConfig

__all__ = ["database_url", "db_option", "seed_option", "solution_option", "task_letters"]

solution_option = click.option(
    "--solution", "solution_path", type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The solution file (default: candidate/solution.py).")
def database_url(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value:
        try:
            DatabaseConfig(url=value)
        except ValueError as error:
            raise click.BadParameter(str(error)) from error
    return value or None


db_option = click.option(
    "--db", "db_url", metavar="URL", callback=database_url,
    help="Database URL (default: DATABASE_URL, else SQLite kata.db in the project).")
seed_option = click.option("--seed", type=int, default=1, show_default=True,
                           help="Seed for the grader's faults and data.")


def task_letters(ctx: click.Context, param: click.Parameter, value: str | None) -> str:
    letters = (value or "").upper()
    if any(letter not in "ABCDE" for letter in letters):
        raise click.BadParameter("tasks are letters among A, B, C, D and E, e.g. A or BC")
    return letters
