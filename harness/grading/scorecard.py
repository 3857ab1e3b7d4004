"""Per-task results of a grading run: the rich scorecard and the JSON results file.

The JSON follows exercism's ``results.json`` in spirit: an overall status, then every test in
file order with its status and message, plus per-task counts.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console, Group
from rich.table import Table
from rich.text import Text

from ..tasks import LETTERS, STRETCH, WRITTEN, TaskStatus, settled, task_status, title
from .precedence import UNRANKED

__all__ = ["Outcome", "Scorecard", "TaskResult"]


@dataclass(frozen=True)
class Outcome:
    name: str
    task: str
    status: str  # "pass" | "fail" | "error"
    message: str | None
    duration: float
    #: Not failures: what a senior reviewer would still point out (e.g. a zombie worker).
    advice: list[str] = field(default_factory=list)
    #: Not failures either, but a bug on another backend: passing here proves less than it
    #: seems (e.g. a claim only SQLite's whole-database lock makes safe).
    warnings: list[str] = field(default_factory=list)
    #: A race's evidence: the timeline's events (see ``harness.world.history``), oldest first.
    timeline: list[dict[str, Any]] = field(default_factory=list)
    #: The command that runs this test alone, to watch the race again.
    replay: str | None = None
    #: The test's pytest node id (the name may repeat across the graded files).
    id: str = ""
    #: Its place in the grader's declared order: the first failure by rank is the task's first
    #: diagnosis (``harness.grading.precedence``).
    rank: list[Any] = field(default_factory=list)

    def timeline_lines(self, width: int = 100) -> list[str]:
        """The race's timeline, drawn at ``width`` (none: [])."""
        from ..world.history import Event, Timeline

        events = [
            Event(e["at"], e["worker"], e["kind"], e["what"], tuple(e["jobs"]), e["site"])
            for e in self.timeline
        ]
        return Timeline(events, 0.0).lines(width) if events else []

    def told(self) -> list[str]:
        """The timeline as the failure's report tells it: the events, then the replay."""
        lines = self.timeline_lines()
        return [*lines, f"  replay: {self.replay}"] if lines and self.replay else lines


@dataclass
class TaskResult:
    task: str
    passed: int = 0
    failed: int = 0
    diagnoses: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    @property
    def status(self) -> TaskStatus:
        return task_status(self.passed, self.failed, self.diagnoses)


@dataclass
class Scorecard:
    solution: str
    backend: str
    seed: int
    tier: str
    outcomes: list[Outcome] = field(default_factory=list)
    #: The command that grades the same way again (same solution, database, tasks, tier, seed).
    rerun: str | None = None

    def add(self, outcome: Outcome) -> None:
        self.outcomes.append(outcome)

    def tasks(self) -> dict[str, TaskResult]:
        results = {task: TaskResult(task) for task in LETTERS}
        for outcome in self.ranked():
            result = results.setdefault(outcome.task, TaskResult(outcome.task))
            result.advice += [a for a in outcome.advice if a not in result.advice]
            result.warnings += [w for w in outcome.warnings if w not in result.warnings]
            if outcome.status == "pass":
                result.passed += 1
            else:
                result.failed += 1
                if outcome.message:
                    result.diagnoses.append(outcome.message)
        return results

    def ranked(self) -> list[Outcome]:
        """The outcomes in the grader's declared order (``harness.grading.precedence``), whatever
        order they ran or arrived in: the first failure of a task is its first diagnosis."""
        return sorted(self.outcomes, key=lambda o: o.rank or UNRANKED)

    @property
    def status(self) -> str:
        """``pass`` when every graded task of A to E passes and no stretch task was tried and
        failed (a stretch task left as the stub, or left out, is "not started": see
        ``harness.tasks.settled``)."""
        if any(o.status == "error" for o in self.outcomes):
            return "error"
        if not self.outcomes:
            return "fail"
        graded = {o.task for o in self.outcomes}
        tasks = self.tasks()
        return "pass" if all(settled(t, tasks[t].status) for t in graded) else "fail"

    def to_json(self) -> dict[str, Any]:
        return {
            "version": 1,
            "status": self.status,
            "solution": self.solution,
            "backend": self.backend,
            "seed": self.seed,
            "tier": self.tier,
            "tasks": {
                t: {
                    "status": r.status,
                    "passed": r.passed,
                    "failed": r.failed,
                    "diagnosis": r.diagnoses[0] if r.diagnoses else None,
                    "advice": r.advice,
                    "warnings": r.warnings,
                }
                for t, r in self.tasks().items()
            },
            "tests": [asdict(o) for o in self.outcomes],
        }

    def write_json(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")

    def timelines(self, width: int = 100) -> list[tuple[str, Outcome, list[str]]]:
        """For each task whose first failure came with a timeline: (task, that outcome, its
        lines at ``width``)."""
        found = []
        for task in LETTERS:
            first = next(
                (o for o in self.ranked() if o.task == task and o.status != "pass" and o.message),
                None,
            )
            if first is None or not first.timeline:
                continue
            found.append((task, first, first.timeline_lines(width)))
        return found

    def render(self, width: int = 100) -> Group:
        table = Table(
            title=f"Campaign-jobs kata — {self.solution} on {self.backend}",
            title_justify="left",
            expand=True,
        )
        table.add_column("task", no_wrap=True)
        table.add_column("", no_wrap=True)
        table.add_column("tests", justify="right", no_wrap=True)
        table.add_column("first diagnosis", ratio=1)
        styles = {
            TaskStatus.PASSING: "bold green",
            TaskStatus.FAILING: "bold red",
            TaskStatus.NOT_STARTED: "yellow",
            "no tests": "dim",
        }
        marks = {
            TaskStatus.PASSING: "✔",
            TaskStatus.FAILING: "✘",
            TaskStatus.NOT_STARTED: "·",
            TaskStatus.NO_TESTS: " ",
        }
        stuck: list[str] = []  # tasks to work on, in order
        for task, result in self.tasks().items():
            if result.status == "no tests":
                continue
            diagnosis = result.diagnoses[0] if result.diagnoses else ""
            if (
                result.status == TaskStatus.NOT_STARTED
            ):  # the status and task columns say it already
                diagnosis = diagnosis.removeprefix(f"{TaskStatus.NOT_STARTED}: ")
                if diagnosis.startswith(f"{title(task)}() "):
                    diagnosis = ""
            if result.status != TaskStatus.PASSING and task in WRITTEN and task not in STRETCH:
                stuck.append(task)
            hint = "".join(f"\n[dim]advice: {_escape(a)}[/dim]" for a in result.advice)
            hint += "".join(f"\n[yellow]warning: {_escape(w)}[/yellow]" for w in result.warnings)
            table.add_row(
                f"{task}  {title(task)}" + (" (stretch)" if task in STRETCH else ""),
                Text(f"{marks[result.status]} {result.status}", style=styles[result.status]),
                f"{result.passed}/{result.passed + result.failed}",
                Text.from_markup(_escape(diagnosis) + hint),
            )
        rerun = self.rerun or f"pytest --kata-seed {self.seed}"
        footer = Text(f"seed {self.seed} · {self.tier} tier · re-run:\n{rerun}", style="dim")
        # A race's timeline under the table, line by line: a table cell would wrap it.
        parts: list[Any] = [table]
        for task, outcome, lines in self.timelines(width):
            parts.append(Text(f"{task} · what happened in {outcome.name}:", style="bold"))
            parts += [Text(line) for line in lines]
            if outcome.replay:
                parts.append(Text(f"  replay: {outcome.replay}", style="dim"))
        if stuck:
            # One next step, never wrapped inside a narrow column: the first task still to do.
            parts.append(
                Text.assemble(
                    ("next: ", "bold"), f"python -m harness hint {stuck[0]}", style="yellow"
                )
            )
        return Group(*parts, footer)

    def print(self, console: Console | None = None) -> None:
        console = console or Console()
        # soft_wrap: the re-run command and timelines are printed whole, never wrapped or cut.
        console.print(self.render(max(80, min(console.width, 120))), soft_wrap=True)


def _escape(text: str) -> str:
    from rich.markup import escape

    return escape(text)
