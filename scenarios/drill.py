"""One invocation of ``scenarios N``: the runs (new or recorded), what is shown of them, the
question, the debrief and the exit status.

``Drill.run`` dispatches: ``--replay`` (``commands.replay``), ``--solution``
(``commands.solution``), else the drill itself: watch production's code (or read the run watched
last), then ``--fixed`` (``commands.fixed``), the question and the debrief, ``--explain``
(``commands.explain``) and ``--report`` (``commands.report``).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.table import Table
from rich.text import Text

from harness.paths import kata_home
from harness.record.events import record_drill
from harness.sql.config import DatabaseConfig, resolve_database_url

from . import store
from .commands.explain import show_explanation
from .commands.fixed import compare, show_verdict
from .commands.replay import replay
from .commands.report import write_report
from .commands.solution import run_solution
from .debrief import debrief, next_steps
from .exits import EXIT_FLAWED, EXIT_MISMATCH, EXIT_UNLOADABLE
from .explanations import Explanation, explain
from .incident import Incident, Load, Variant
from .measure import run_isolated
from .questions import question_for
from .quiz import FOLLOW_UP, Grade, grade_answer, record, review_change
from .record import RunRecord, new_id
from .signatures import signature
from .summary import plain_summary, verified_line
from .terminal import DrillTerminal
from .totals import TotalsMismatch

__all__ = ["Drill", "Options", "database_config"]


@dataclass(frozen=True)
class Options:
    """What the command line asked for, besides the incident, the load and the database."""

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
                return replay(self)
            if self.options.solution is not None:
                return run_solution(self, self.options.solution)
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
            self.introduce(self.load, self.config.describe())
            watched = self.measure(self.incident.variant("flawed"), self.load)
        else:
            self.use_backend_of(watched)
            self.introduce_recorded(watched)
        fixed: RunRecord | None = None
        if options.fixed:
            fixed = self.measure(
                self.incident.variant("fixed"),
                watched.load,
                fixed_of=watched.id,
                grace=watched.grace,
            )
            compare(self, watched, fixed)
            show_verdict(self, watched, fixed)
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
            show_explanation(self, watched, explanation)
        write_report(self, watched, fixed, explanation)
        self.terminal.rule("Next")
        self.terminal.show(
            next_steps(self.incident.number, watched, explained=explained, fixed=fixed is not None)
        )
        if self.terminal.as_json:
            runs = {"flawed": watched} if fixed is None else {"flawed": watched, "fixed": fixed}
            self.terminal.emit_json(
                self.document(runs, graded, explanation if explained else None, fresh)
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

    def use_backend_of(self, watched: RunRecord) -> None:
        """A recorded run's fix runs on its backend, unless --db said otherwise."""
        if not self.options.db_given and watched.dialect != self.config.dialect:
            self.config = database_config(watched.dialect)
        self.question = question_for(self.incident.number, watched.dialect)

    def measure(
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
        self.terminal.show(verified_line(run))
        return run

    # -- output ------------------------------------------------------------------------------------

    def introduce(self, load: Load, where: str) -> None:
        incident = self.incident
        self.terminal.rule(f"Incident {incident.number}: {incident.title}")
        self.terminal.show(Text(incident.page_for(self.config.dialect), style="italic"))
        self.terminal.show(
            f"The code production runs: {incident.path}\n"
            f"Load: {load.jobs:,} jobs queued at once, {load.workers} workers, "
            f"{load.duration:g} s per run, seed {load.seed}, on {where}.\n"
        )

    def introduce_recorded(self, run: RunRecord) -> None:
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

    def document(
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
