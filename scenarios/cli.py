"""``scenarios N``: an incident drill. Run production's code under load, watch, diagnose, fix.

    scenarios                         # the list of incidents
    scenarios 1                       # the live board, then the question
    scenarios 1 --fixed               # ... then the same load with the fix, side by side
    scenarios 2 --explain             # ... and the root cause, its evidence, and the fix
    scenarios 3 --solution            # your candidate/solution.py under incident 3's load
    scenarios 1 --no-input --answer B --json      # for scripts

Exit status: 0; 1 when the answer is wrong or your solution shows the flaw (or could not run);
2 for a usage error or a solution that does not load; 3 when the dashboard's totals disagree with
the database or the ledger (a bug in the drill).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from rich.table import Table
from rich.text import Text

from harness.config import DatabaseConfig, resolve_database_url
from harness.solutions import CANDIDATE_PATH, load_solution

from . import INCIDENTS
from .dashboard import plain_summary, render_comparison
from .diagnosis import QUESTIONS, Explanation, Verdict, explain, signature
from .incident import (
    DEFAULT_DURATION,
    DEFAULT_JOBS,
    DEFAULT_WORKERS,
    Incident,
    Load,
    Variant,
)
from .measure import RunResult, run_isolated
from .quiz import DEFAULT_ANSWERS_FILE, FOLLOW_UP, Grade, grade, record
from .terminal import Terminal
from .totals import TotalsMismatch

__all__ = ["main"]

EXIT_FLAWED = 1
EXIT_UNLOADABLE = 2
EXIT_MISMATCH = 3


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
@click.option("--fixed", is_flag=True, help="Also run the same load with the fix; compare.")
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
@click.option("--explain", is_flag=True, help="Show the root cause, its evidence and the fix.")
@click.option("--no-input", is_flag=True, help="Never prompt.")
@click.option("--answer", metavar="LETTER", help="Your diagnosis (A-E), graded at the end.")
@click.option("--change", metavar="TEXT", help="Your answer to 'what would you change?'.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document, nothing else.")
@click.option(
    "--answers-file",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_ANSWERS_FILE,
    show_default=True,
    help="Where graded answers are appended (JSON lines).",
)
def main(
    number: int | None,
    duration: float,
    workers: int,
    jobs: int,
    db: str | None,
    seed: int,
    grace: float | None,
    fixed: bool,
    use_solution: bool,
    solution_path: Path | None,
    explain: bool,
    no_input: bool,
    answer: str | None,
    change: str | None,
    as_json: bool,
    answers_file: Path,
) -> None:
    terminal = Terminal(as_json=as_json)
    if number is None:
        _list_incidents(terminal)
        return
    incident = INCIDENTS[number]
    if answer is not None and answer.strip().upper() not in QUESTIONS[number].letters:
        raise click.BadParameter(
            f"{answer!r} is not one of {', '.join(QUESTIONS[number].letters)}",
            param_hint="--answer",
        )
    options = Options(
        grace=grace,
        fixed=fixed,
        solution=solution_path or (CANDIDATE_PATH if use_solution else None),
        explain=explain,
        no_input=no_input or as_json,
        answer=answer,
        change=change,
        answers_file=answers_file,
    )
    try:
        config = database_config(db)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--db") from error
    load = Load(jobs=jobs, workers=workers, duration=duration, seed=seed)
    sys.exit(Drill(incident, load, config, options, terminal).run())


class Drill:
    """One invocation: the runs, what is shown of them, the question, the exit status."""

    def __init__(
        self,
        incident: Incident,
        load: Load,
        config: DatabaseConfig,
        options: Options,
        terminal: Terminal,
    ) -> None:
        self.incident, self.load, self.config = incident, load, config
        self.options, self.terminal = options, terminal
        self.question = QUESTIONS[incident.number]

    def run(self) -> int:
        try:
            variants = self._variants()
        except Exception as error:  # the candidate's file: a syntax error, a missing function
            self.terminal.error(f"cannot load {self.options.solution}: {error}")
            return EXIT_UNLOADABLE
        self._introduce()
        try:
            with self.terminal.driver_noise():
                results = asyncio.run(self._measure(variants))
        except TotalsMismatch as error:
            self.terminal.error(f"BUG in the drill: {error}")
            return EXIT_MISMATCH
        return self._conclude(results)

    def _variants(self) -> list[Variant]:
        first = (
            self.incident.variant("solution", load_solution(self.options.solution))
            if self.options.solution is not None
            else self.incident.variant("flawed")
        )
        wants_fix = self.options.fixed or (
            self.options.solution is not None and self.incident.needs_baseline
        )
        return [first, self.incident.variant("fixed")] if wants_fix else [first]

    async def _measure(self, variants: list[Variant]) -> dict[str, RunResult]:
        results = {}
        for variant in variants:
            with self.terminal.board() as draw:
                result = await run_isolated(
                    self.incident,
                    variant,
                    self.load,
                    self.config,
                    on_snapshot=draw,
                    grace=self.options.grace,
                )
            results[variant.key] = result
            if not self.terminal.live:
                self.terminal.show(plain_summary(result.snapshot), soft_wrap=True, markup=False)
            self.terminal.show(_verified_line(result))
            if not variant.ours and result.report.aborted:
                break  # a solution that cannot run needs no baseline to compare with
        return results

    # -- output ------------------------------------------------------------------------------------

    def _introduce(self) -> None:
        incident, load = self.incident, self.load
        self.terminal.rule(f"Incident {incident.number}: {incident.title}")
        self.terminal.show(Text(incident.page, style="italic"))
        self.terminal.show(
            f"The code production runs: {incident.path}\n"
            f"Load: {load.jobs:,} jobs queued at once, {load.workers} workers, "
            f"{load.duration:g} s per run, seed {load.seed}, on {self.config.describe()}.\n"
        )

    def _conclude(self, results: dict[str, RunResult]) -> int:
        first = results.get("solution") or results["flawed"]
        fixed = results.get("fixed")
        verdicts = {key: signature(result, fixed) for key, result in results.items()}
        if fixed is not None:
            self.terminal.show(render_comparison(first.snapshot, fixed.snapshot))
        status = 0
        graded: Grade | None = None
        explanation: Explanation | None = None
        if first.variant.key == "solution":
            status = self._judge_solution(first, verdicts["solution"])
        else:
            graded = self._ask(first)
            if graded is not None and not graded.correct:
                status = EXIT_FLAWED
        if self.options.explain or (graded is not None and not graded.correct):
            explanation = explain(results.get("flawed") or first, fixed)
            self._show_explanation(explanation)
        if self.terminal.as_json:
            self.terminal.emit_json(self._document(results, verdicts, graded, explanation))
        return status

    def _judge_solution(self, result: RunResult, verdict: Verdict) -> int:
        name = result.variant.solution.path.name
        if result.report.aborted:
            self.terminal.show(
                f"[bold red]Your {name} could not run under this load:[/] {result.report.aborted}"
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

    def _ask(self, result: RunResult) -> Grade | None:
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
        graded = grade(question, answer, change or "")
        if graded.correct:
            self.terminal.show(f"[bold green]Right: {graded.right}.[/]")
        else:
            self.terminal.show(
                f"[bold red]Not quite: you answered {graded.given}; the root cause "
                f"is {graded.right}.[/]"
            )
        record(
            options.answers_file,
            scenario=self.incident.number,
            result=graded,
            figures=result.figures(),
        )
        return graded

    def _show_explanation(self, explanation: Explanation) -> None:
        self.terminal.rule("Root cause")
        self.terminal.show(explanation.root_cause)
        self.terminal.rule("Evidence from this run")
        for line in explanation.evidence:
            self.terminal.show(f" • {line}")
        self.terminal.rule("The fix")
        self.terminal.show(explanation.fix)
        self.terminal.show(f"[dim]The fixed code is at the bottom of {self.incident.path}.[/]")

    def _document(
        self,
        results: dict[str, RunResult],
        verdicts: dict[str, Verdict],
        graded: Grade | None,
        explanation: Explanation | None,
    ) -> dict[str, Any]:
        return {
            "scenario": self.incident.number,
            "slug": self.incident.slug,
            "title": self.incident.title,
            "backend": self.config.dialect,
            "runs": {
                key: {**result.as_dict(), "signature": verdicts[key].as_dict()}
                for key, result in results.items()
            },
            "question": self.question.as_dict(),
            "answer": graded.as_dict() if graded else None,
            "explanation": explanation.as_dict() if explanation else None,
        }


def _verified_line(result: RunResult) -> str:
    t = result.totals
    return (
        f"[dim]Totals re-counted from the database and the ledger after the workers stopped: "
        f"{t.jobs['pending']:,} pending, {t.jobs['running']:,} running, "
        f"{t.jobs['completed']:,} completed, {t.jobs['failed']:,} failed; {t.delivered:,} emails "
        f"delivered, {t.duplicate_copies:,} duplicate copies - they match the board.[/]\n"
    )


def _list_incidents(terminal: Terminal) -> None:
    terminal.show("[bold]Incident drills[/] (run one with `scenarios N`):")
    for number, incident in INCIDENTS.items():
        terminal.show(f"  [bold]{number}[/]  {incident.title}  [dim]({incident.path.name})[/]")
