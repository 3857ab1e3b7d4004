"""``scenarios N``: an incident drill. Run production's code under load, watch, diagnose, fix.

    scenarios                         # the list of incidents
    scenarios 1                       # the live board, then the question and the debrief
    scenarios 1 --explain             # the root cause, with the evidence of the run you watched
    scenarios 1 --fixed               # the fix on that run's load and seed, side by side with it
    scenarios 1 --replay              # that run's board again, as it was drawn
    scenarios 1 --report run.html     # that run as one HTML page, with charts
    scenarios 3 --solution            # your candidate/solution.py under incident 3's load
    scenarios 1 --no-input --answer B --json      # for scripts

Every run is recorded under .kata/drills/ (KATA_HOME): --explain, --fixed, --replay and
--report read the last run watched (or --run ID), so that they quote the numbers that were on the
board; without one, all but --replay start a new run first.

Exit status: 0; 1 when the answer is wrong or your solution shows the flaw (or could not run);
2 for a usage error, a solution that does not load or a recorded run that cannot be found; 3 when
the dashboard's totals disagree with the database or the ledger (a bug in the drill).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from click.core import ParameterSource

from harness.worker.solutions import CANDIDATE_PATH

from . import INCIDENTS, store
from .drill import Drill, Options, database_config
from .incident import DEFAULT_DURATION, DEFAULT_JOBS, DEFAULT_WORKERS, Load
from .questions import question_for
from .quiz import answers_file as default_answers_file
from .terminal import DrillTerminal

__all__ = ["main"]

_LOAD_OPTIONS = ("jobs", "workers", "duration", "seed")


def _reapers() -> str:
    """Which drills run the solution's reaper too (``Incident.solution_reaps``)."""
    numbers = [str(number) for number, incident in INCIDENTS.items() if incident.solution_reaps]
    if not numbers:
        return ""
    return f" (in drill {' and '.join(numbers)}, its recover_stalled_jobs too: Task F)"


@click.command(
    name="scenarios",
    help=__doc__.split("\n\n")[0],
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="\b\nThe drills:\n"
    + "\n".join(f"  {number}  {incident.title}" for number, incident in INCIDENTS.items()),
)
@click.argument("number", type=click.IntRange(1, len(INCIDENTS)), required=False)
@click.option(
    "--duration",
    type=click.FloatRange(min=0.5),
    default=DEFAULT_DURATION,
    show_default=True,
    help="Seconds each run lasts (the queue need not drain).",
)
@click.option("--workers", type=click.IntRange(1, 500), default=DEFAULT_WORKERS, show_default=True)
@click.option(
    "--jobs",
    type=click.IntRange(1, 200_000),
    default=DEFAULT_JOBS,
    show_default=True,
    help="Customers queued at the start.",
)
@click.option(
    "--db",
    "db",
    default=None,
    metavar="URL",
    help="sqlite, postgresql or a URL (default: DATABASE_URL, else SQLite). Each run "
    "gets a fresh database (a temporary file or schema).",
)
@click.option(
    "--seed", type=int, default=1, show_default=True, help="Seed of the APIs' latency and faults."
)
@click.option(
    "--grace",
    type=click.FloatRange(min=0),
    default=None,
    help="Seconds workers get after the stop to finish the calls they are in "
    "(default: the incident's deployment, a few seconds).",
)
@click.option(
    "--fixed",
    is_flag=True,
    help="Run the whole fix on the load and seed of the last run watched (or a new one) and "
    "compare the two.",
)
@click.option(
    "--explain",
    is_flag=True,
    help="Show the root cause, the evidence in the last run watched (or a new one), the fix.",
)
@click.option(
    "--replay", is_flag=True, help="Redraw the last run watched (and its fixed run); run nothing."
)
@click.option(
    "--report",
    "report_path",
    type=click.Path(dir_okay=False, path_type=Path),
    metavar="PATH",
    help="Write the last run watched (and its fixed run) as a self-contained HTML page.",
)
@click.option(
    "--run",
    "run_id",
    metavar="ID",
    help="The recorded run --explain, --fixed and --replay read (default: the last watched).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0.1),
    default=1.0,
    show_default=True,
    help="How much faster than it ran --replay redraws a run.",
)
@click.option(
    "--solution",
    "use_solution",
    is_flag=True,
    help="Run your candidate/solution.py under the load instead of production's code"
    + _reapers()
    + ".",
)
@click.option(
    "--solution-path",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Another solution file for --solution (implies it).",
)
@click.option("--no-input", is_flag=True, help="Never prompt.")
@click.option("--answer", metavar="LETTER", help="Your diagnosis (A-E), graded at the end.")
@click.option("--change", metavar="TEXT", help="Your answer to 'what would you change?'.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document, nothing else.")
@click.option(
    "--answers-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Where graded answers are appended (JSON lines) [default: .kata/scenario-answers.jsonl].",
)
@click.pass_context
def main(
    ctx: click.Context,
    number: int | None,
    duration: float,
    workers: int,
    jobs: int,
    db: str | None,
    seed: int,
    grace: float | None,
    fixed: bool,
    explain: bool,
    replay: bool,
    report_path: Path | None,
    run_id: str | None,
    speed: float,
    use_solution: bool,
    solution_path: Path | None,
    no_input: bool,
    answer: str | None,
    change: str | None,
    as_json: bool,
    answers_file: Path | None,
) -> None:
    terminal = DrillTerminal(as_json=as_json)
    if number is None:
        _list_incidents(terminal)
        return
    incident = INCIDENTS[number]
    if answer is not None and answer.strip().upper() not in question_for(number, "").letters:
        raise click.BadParameter(
            f"{answer!r} is not one of {', '.join(question_for(number, '').letters)}",
            param_hint="--answer",
        )
    given = {
        name: ctx.params[name]
        for name in _LOAD_OPTIONS
        if ctx.get_parameter_source(name) is not ParameterSource.DEFAULT
    }
    options = Options(
        grace=grace,
        fixed=fixed,
        solution=solution_path or (CANDIDATE_PATH if use_solution else None),
        explain=explain,
        no_input=no_input or as_json,
        answer=answer,
        change=change,
        answers_file=answers_file or default_answers_file(),
        replay=replay,
        report=report_path,
        run=run_id,
        speed=speed,
        explicit=given,
        db_given=db is not None,
    )
    try:
        config = database_config(db)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--db") from error
    load = Load(jobs=jobs, workers=workers, duration=duration, seed=seed)
    sys.exit(Drill(incident, load, config, options, terminal).run())


def _list_incidents(terminal: DrillTerminal) -> None:
    terminal.show("[bold]Incident drills[/] (run one with `scenarios N`):")
    for number, incident in INCIDENTS.items():
        terminal.show(f"  [bold]{number}[/]  {incident.title}  [dim]({incident.path.name})[/]")
        last = store.latest(number, variants=("flawed",))
        if last is not None:
            terminal.show(
                f"     [dim]last watched: {last.id} on {last.dialect} "
                f"(--explain, --fixed, --replay and --report read it)[/]"
            )
