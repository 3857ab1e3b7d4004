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

import asyncio
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from click.core import ParameterSource
from rich.table import Table
from rich.text import Text

from harness.paths import kata_home
from harness.record.events import record_drill
from harness.sql.config import DatabaseConfig, resolve_database_url
from harness.worker.solutions import CANDIDATE_PATH, load_solution

from . import INCIDENTS, store
from .comparison import render_comparison
from .debrief import bullets, debrief, next_steps
from .explanations import Explanation, explain, history_lines
from .incident import (
    DEFAULT_DURATION,
    DEFAULT_JOBS,
    DEFAULT_WORKERS,
    Incident,
    Load,
    Variant,
)
from .measure import run_isolated
from .questions import question_for
from .quiz import FOLLOW_UP, Grade, grade_answer, record, review_change
from .quiz import answers_file as default_answers_file
from .record import RunRecord, new_id
from .signatures import Verdict, signature, symptom
from .summary import plain_summary
from .terminal import DrillTerminal
from .totals import TotalsMismatch

__all__ = ["main"]

EXIT_FLAWED = 1
EXIT_UNLOADABLE = 2
EXIT_MISMATCH = 3

#: The load options: given on the command line, they choose which recorded run is meant.
_LOAD_OPTIONS = ("jobs", "workers", "duration", "seed")


@dataclass(frozen=True)
class Options:
    grace: float | None
    fixed: bool
    solution: Path | None
    explain: bool
    no_input: bool
    answer: str | None
    change: str | None
    answers_file: Path
    replay: bool = False
    report: Path | None = None
    run: str | None = None
    speed: float = 1.0
    #: The load options given on the command line (the others are defaults).
    explicit: dict[str, Any] = field(default_factory=dict)
    #: Whether --db (or DATABASE_URL) chose the backend, rather than a recorded run.
    db_given: bool = True


def database_config(choice: str | None) -> DatabaseConfig:
    """``--db``: a URL, or ``sqlite`` / ``postgresql``; default ``DATABASE_URL`` or SQLite. Read
    as every command reads it (``resolve_database_url``); each run gets a fresh copy anyway."""
    return DatabaseConfig(url=resolve_database_url(choice))


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
    help="Run your candidate/solution.py under the load instead of production's code.",
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


class Drill:
    """One invocation: the runs (new or recorded), what is shown of them, the question, the
    debrief, the exit status."""

    def __init__(
        self,
        incident: Incident,
        load: Load,
        config: DatabaseConfig,
        options: Options,
        terminal: DrillTerminal,
    ) -> None:
        self.incident, self.load, self.config = incident, load, config
        self.options, self.terminal = options, terminal
        self.question = question_for(incident.number, config.dialect)

    def run(self) -> int:
        try:
            if self.options.replay:
                return self._replay()
            if self.options.solution is not None:
                return self._solution(self.options.solution)
            return self._drill()
        except TotalsMismatch as error:
            self.terminal.error(f"BUG in the drill: {error}")
            return EXIT_MISMATCH
        except LookupError as error:
            self.terminal.error(str(error))
            return EXIT_UNLOADABLE

    # -- the drill ---------------------------------------------------------------------------------

    def _drill(self) -> int:
        """Watch production's code (or read the run watched last), then what was asked for."""
        options = self.options
        reads_record = options.explain or options.fixed or options.report is not None
        watched = self._recorded() if reads_record else None
        fresh = watched is None
        if watched is None:
            self._introduce(self.load, self.config.describe())
            watched = self._measure(self.incident.variant("flawed"), self.load)
        else:
            self._use_backend_of(watched)
            self._introduce_recorded(watched)
        fixed: RunRecord | None = None
        if options.fixed:
            fixed = self._measure(
                self.incident.variant("fixed"),
                watched.load,
                fixed_of=watched.id,
                grace=watched.grace,
            )
            self._compare(watched, fixed)
            self._show_fix_verdict(watched, fixed)
        elif options.explain or options.report is not None:
            fixed = store.fixed_for(watched)
        explanation = explain(watched, fixed)
        graded = self._ask(watched) if fresh or options.answer is not None else None
        explained = options.explain or (graded is not None and not graded.correct)
        if graded is not None:
            self.terminal.rule("Debrief")
            for part in debrief(self.question, graded, watched, explanation, explained=explained):
                self.terminal.show(part)
        if explained:
            self._show_explanation(watched, explanation)
        self._write_report(watched, fixed, explanation)
        self.terminal.rule("Next")
        self.terminal.show(
            next_steps(self.incident.number, watched, explained=explained, fixed=fixed is not None)
        )
        if self.terminal.as_json:
            runs = {"flawed": watched} if fixed is None else {"flawed": watched, "fixed": fixed}
            self.terminal.emit_json(
                self._document(runs, graded, explanation if explained else None, fresh)
            )
        return EXIT_FLAWED if graded is not None and not graded.correct else 0

    def _recorded(self) -> RunRecord | None:
        """The run ``--explain``/``--fixed`` mean: ``--run ID``, else the last watched that
        matches the options given on the command line (None: start a new one)."""
        if self.options.run is not None:
            record = store.load(self.options.run)
            if record.incident != self.incident.number:
                raise LookupError(
                    f"run {record.id} is of incident {record.incident}, not {self.incident.number}"
                )
            return record
        dialect = self.config.dialect if self.options.db_given else None
        return store.latest(self.incident.number, dialect=dialect, **self.options.explicit)

    def _use_backend_of(self, watched: RunRecord) -> None:
        """A recorded run's fix runs on its backend, unless --db said otherwise."""
        if not self.options.db_given and watched.dialect != self.config.dialect:
            self.config = database_config(watched.dialect)
        self.question = question_for(self.incident.number, watched.dialect)

    def _measure(
        self,
        variant: Variant,
        load: Load,
        *,
        fixed_of: str | None = None,
        grace: float | None = None,
    ) -> RunRecord:
        """Run ``variant`` under ``load`` on a fresh database, watched; record and keep it."""
        grace = self.options.grace if grace is None else grace
        with self.terminal.driver_noise() as noise, self.terminal.board() as draw:
            result = asyncio.run(
                run_isolated(
                    self.incident,
                    variant,
                    load,
                    self.config,
                    on_snapshot=draw,
                    grace=grace,
                    record_id=new_id(self.incident.number, variant.key),
                )
            )
        run = result.record
        run.fixed_of = fixed_of
        if noise:
            run.notes["driver_messages"] = {"count": len(noise), "first": noise[0]}
        store.save(run)
        if not self.terminal.live:
            self.terminal.show(plain_summary(run.snapshot), soft_wrap=True, markup=False)
        self.terminal.show(_verified_line(run))
        return run

    # -- the candidate's solution ------------------------------------------------------------------

    def _solution(self, path: Path) -> int:
        options = self.options
        try:
            solution = load_solution(path)
        except Exception as error:  # the candidate's file: a syntax error, a missing function
            self.terminal.error(f"cannot load {path}: {error}")
            return EXIT_UNLOADABLE
        self._introduce(self.load, self.config.describe())
        ours = self._measure(self.incident.variant("solution", solution), self.load)
        baseline: RunRecord | None = None
        if not ours.aborted and (options.fixed or self.incident.needs_baseline):
            baseline = self._measure(self.incident.variant("fixed"), self.load, fixed_of=ours.id)
            self._compare(ours, baseline)
        verdict = signature(ours, baseline)
        status = self._judge_solution(ours, verdict)
        explanation = None
        if options.explain:
            watched = store.latest(self.incident.number)
            if watched is None:
                self.terminal.show(
                    f"[dim](no recorded run of incident {self.incident.number} to explain: "
                    f"run `scenarios {self.incident.number}` first)[/]"
                )
            else:
                explanation = explain(watched, store.fixed_for(watched))
                self._show_explanation(watched, explanation)
        if self.terminal.as_json:
            runs = {"solution": ours} if baseline is None else {"solution": ours, "fixed": baseline}
            self.terminal.emit_json(self._document(runs, None, explanation, True, baseline))
        return status

    def _judge_solution(self, run: RunRecord, verdict: Verdict) -> int:
        name = Path(run.solution).name
        if run.aborted:
            self.terminal.show(
                f"[bold red]Your {name} could not run under this load:[/] {run.aborted}"
            )
            return EXIT_FLAWED
        if verdict.shows_flaw:
            self.terminal.show(
                f"[bold red]Your {name} shows incident {self.incident.number}'s "
                f"flaw:[/] {verdict.summary}."
            )
            return EXIT_FLAWED
        self.terminal.show(
            f"[bold green]Your {name} does not show incident "
            f"{self.incident.number}'s flaw:[/] {verdict.summary}."
        )
        return 0

    # -- replay ------------------------------------------------------------------------------------

    def _replay(self) -> int:
        options = self.options
        watched = (
            store.load(options.run)
            if options.run is not None
            else store.latest(
                self.incident.number,
                variants=("flawed", "solution"),
                dialect=self.config.dialect if options.db_given else None,
                **options.explicit,
            )
        )
        if watched is None:
            self.terminal.error(
                f"no recorded run of incident {self.incident.number} to replay: run "
                f"`scenarios {self.incident.number}` first"
            )
            return EXIT_UNLOADABLE
        self._use_backend_of(watched)
        self._introduce_recorded(watched)
        self._redraw(watched)
        fixed = store.fixed_for(watched)
        if fixed is not None:
            self._redraw(fixed)
            self._compare(watched, fixed)
        self._write_report(watched, fixed, explain(watched, fixed))
        self.terminal.rule("Next")
        self.terminal.show(
            next_steps(self.incident.number, watched, explained=False, fixed=fixed is not None)
        )
        if self.terminal.as_json:
            runs = {watched.variant: watched}
            if fixed is not None:
                runs["fixed"] = fixed
            self.terminal.emit_json(self._document(runs, None, None, False))
        return 0

    def _redraw(self, run: RunRecord) -> None:
        """Draw ``run``'s board as it was drawn (``--speed`` times faster); one summary when
        the output is not a terminal."""
        with self.terminal.board() as draw:
            if draw is not None:
                previous = 0.0
                for snapshot in run.timeline:
                    time.sleep(max(0.0, snapshot.elapsed - previous) / self.options.speed)
                    previous = snapshot.elapsed
                    draw(snapshot)
        if not self.terminal.live:
            self.terminal.show(plain_summary(run.snapshot), soft_wrap=True, markup=False)
        self.terminal.show(_verified_line(run, recorded=True))

    def _write_report(
        self, watched: RunRecord, fixed: RunRecord | None, explanation: Explanation
    ) -> None:
        if self.options.report is None:
            return
        try:
            from .report import write_report  # plotly is only needed here

            path = write_report(self.options.report, self.incident, watched, fixed, explanation)
        except ImportError as error:
            self.terminal.error(f"--report needs plotly ({error}): pip install -e .")
            return
        self.terminal.show(f"The report of run {watched.id} is in {path.resolve()}.")

    # -- output ------------------------------------------------------------------------------------

    def _introduce(self, load: Load, where: str) -> None:
        incident = self.incident
        self.terminal.rule(f"Incident {incident.number}: {incident.title}")
        self.terminal.show(Text(incident.page_for(self.config.dialect), style="italic"))
        self.terminal.show(
            f"The code production runs: {incident.path}\n"
            f"Load: {load.jobs:,} jobs queued at once, {load.workers} workers, "
            f"{load.duration:g} s per run, seed {load.seed}, on {where}.\n"
        )

    def _introduce_recorded(self, run: RunRecord) -> None:
        incident = self.incident
        self.terminal.rule(f"Incident {incident.number}: {incident.title}")
        self.terminal.show(Text(incident.page_for(run.dialect), style="italic"))
        load = run.load
        self.terminal.show(
            f"The run you watched: {run.id} ({run.label}, {run.started}), recorded in "
            f"{store.drills_home()}.\n"
            f"Load: {load.jobs:,} jobs queued at once, {load.workers} workers, "
            f"{load.duration:g} s, seed {load.seed}, on {run.database}.\n"
        )

    def _compare(self, watched: RunRecord, fixed: RunRecord) -> None:
        self.terminal.show(
            render_comparison(
                watched.snapshot,
                fixed.snapshot,
                labels=("watched" if watched.variant == "flawed" else watched.label, fixed.label),
            )
        )

    def _show_fix_verdict(self, watched: RunRecord, fixed: RunRecord) -> None:
        verdict = symptom(watched, fixed)
        if verdict.shows_flaw:
            self.terminal.show(
                f"[bold red]The fix did not clear the page's symptom:[/] {verdict.summary}."
            )
        else:
            self.terminal.show(
                f"[bold green]The fix clears the page's symptom:[/] {verdict.summary}."
            )

    def _ask(self, run: RunRecord) -> Grade | None:
        question, options = self.question, self.options
        self.terminal.rule("Your diagnosis")
        self.terminal.show(question.prompt)
        choices = Table.grid(padding=(0, 1))
        choices.add_column(justify="right", style="bold")
        choices.add_column()
        for choice in question.choices:
            choices.add_row(f"  {choice.letter}.", choice.text)
        self.terminal.show(choices)
        interactive = not options.no_input and sys.stdin.isatty()
        answer = options.answer
        if answer is None and interactive:
            answer = self.terminal.ask("Your answer", choices=question.letters)
        if answer is None:
            self.terminal.show("[dim](answer with --answer LETTER, or run without --no-input)[/]")
            return None
        change = options.change
        if change is None and interactive:
            change = self.terminal.ask(FOLLOW_UP)
        graded = grade_answer(question, answer, change or "")
        record(
            options.answers_file,
            scenario=self.incident.number,
            result=graded,
            figures=run.figures(),
            run=run.id,
        )
        run.answer = graded.as_dict()
        store.save(run)
        review = review_change(self.question, graded.change)
        points = [(point.label, made, point.warns) for point, made in review]
        record_drill(kata_home(), scenario=self.incident.number, run=run.id,
                     answer=graded.as_dict(), points=points)  # fmt: skip
        return graded

    def _show_explanation(self, run: RunRecord, explanation: Explanation) -> None:
        self.terminal.rule("Root cause")
        self.terminal.show(explanation.root_cause)
        self.terminal.rule(f"Evidence from this run ({run.id})")
        self.terminal.show(bullets([*explanation.evidence, *explanation.fixed]))
        if explanation.jobs:
            self.terminal.rule("The jobs that show it")
            # Drawn again at the terminal's width: a line folded by the terminal breaks mid-word.
            jobs = history_lines(run, limit=2, width=self.terminal.width)
            self.terminal.show(Text("\n".join(jobs)))
        self.terminal.rule("The fix")
        self.terminal.show(explanation.fix, markup=False)
        self.terminal.show(f"[dim]The fixed code is at the bottom of {self.incident.path}.[/]")

    def _document(
        self,
        runs: dict[str, RunRecord],
        graded: Grade | None,
        explanation: Explanation | None,
        fresh: bool,
        baseline: RunRecord | None = None,
    ) -> dict[str, Any]:
        fixed = runs.get("fixed") or baseline
        dialect = next(iter(runs.values())).dialect
        return {
            "scenario": self.incident.number,
            "slug": self.incident.slug,
            "title": self.incident.title,
            "page": self.incident.page_for(dialect),
            "backend": dialect,
            "recorded": not fresh,
            "runs": {
                key: {
                    **run.as_dict(),
                    "signature": signature(run, fixed if run is not fixed else run).as_dict(),
                }
                for key, run in runs.items()
            },
            "question": question_for(self.incident.number, dialect).as_dict(),
            "answer": {
                **graded.as_dict(),
                "review": [
                    {"point": point.label, "made": made, "warns": point.warns}
                    for point, made in review_change(self.question, graded.change)
                ],
            }
            if graded
            else None,
            "explanation": explanation.as_dict() if explanation else None,
        }


def _verified_line(run: RunRecord, *, recorded: bool = False) -> str:
    t = run.totals
    when = "when it ran" if recorded else "after the workers stopped"
    return (
        f"[dim]Totals re-counted from the database and the ledger {when}: "
        f"{t['pending']:,} pending, {t['running']:,} running, "
        f"{t['completed']:,} completed, {t['failed']:,} failed; {t['delivered']:,} emails "
        f"delivered, {t['duplicate_copies']:,} duplicate copies - they match the board. "
        f"Recorded as {run.id}.[/]\n"
    )


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
