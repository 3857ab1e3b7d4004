"""What a drill says once the candidate has answered: the verdict, the evidence, what to run next.

``debrief`` turns a graded answer and the watched run's record into renderables: the verdict
(with the right choice in full), what the "what would you change?" answer says and misses (the
question's rubric), the strongest evidence from this run, and the commands that go on from here
(the whole explanation, the fix on the same load and seed, a replay, the candidate's own code).
Nothing here measures: every number is the record's.
"""

from __future__ import annotations

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from harness.sql.config import DatabaseConfig, resolve_database_url

from .explanations import Explanation
from .incident import DEFAULT_DURATION, DEFAULT_JOBS, DEFAULT_SEED, DEFAULT_WORKERS
from .quiz import Grade, Question, review_change
from .record import RunRecord
from .refutations import why_not

__all__ = ["bullets", "debrief", "next_steps"]

#: Evidence lines the debrief quotes; ``--explain`` shows them all.
_EVIDENCE = 3


def debrief(
    question: Question,
    graded: Grade,
    record: RunRecord,
    explanation: Explanation,
    *,
    explained: bool,
) -> list[RenderableType]:
    """The debrief of ``graded``; ``explained`` when the whole explanation follows anyway."""
    right = question.choice(graded.right)
    parts: list[RenderableType] = []
    if graded.correct:
        parts.append(
            Text.assemble(
                ("Right: ", "bold green"), (f"{graded.right}.", "bold green"), f" {right.text}"
            )
        )
    else:
        given = question.choice(graded.given)
        answer = Table.grid(padding=(0, 1))
        answer.add_column(no_wrap=True)
        answer.add_column()
        answer.add_row("  You said:", given.text)
        refutation = why_not(record, graded.given)
        if refutation is not None:  # why that answer does not fit this run, before the right one
            answer.add_row(Text("  Why not:", style="bold"), refutation)
        answer.add_row("  It is:", right.text)
        parts.append(
            Group(
                Text.assemble(
                    ("Not quite: ", "bold red"),
                    (f"you answered {graded.given}; the root cause is {graded.right}.", "bold red"),
                ),
                answer,
            )
        )
    parts.append(_review(question, graded.change, explanation))
    if not explained:
        evidence = Text(f"Evidence from this run ({record.id}):", style="bold")
        parts.append(
            Group(evidence, bullets([*explanation.evidence[:_EVIDENCE], *explanation.fixed]))
        )
    return parts


def bullets(lines: list[str]) -> Table:
    """``lines`` as a list, each wrapped under its own first word (never back to column 1)."""
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column()
    for line in lines:
        table.add_row(" •", Text(line))
    return table


def _review(question: Question, change: str, explanation: Explanation) -> RenderableType:
    """The change the candidate proposed, point by point against the rubric."""
    change = change.strip()
    title = Text("Your change: ", style="bold")
    if not change:
        fix = Table.grid(padding=(0, 1))
        fix.add_column(no_wrap=True)
        fix.add_column()
        fix.add_row("  The fix, in short:", explanation.fix)
        return Group(title + Text("(none given)", style="dim"), fix)
    rows = Table.grid(padding=(0, 1))
    rows.add_column(width=2)
    rows.add_column()
    for point, made in review_change(question, change):
        if point.warns:
            if made:
                rows.add_row(Text("!", style="bold yellow"), Text(f"careful: {point.label}"))
            continue
        rows.add_row(
            Text("✓", style="bold green") if made else Text("✗", style="bold red"),
            Text(point.label) if made else Text(f"not said: {point.label}", style="dim"),
        )
    return Group(title + Text(f"“{change}”"), rows)


def next_steps(number: int, record: RunRecord, *, explained: bool, fixed: bool) -> Group:
    """The commands that go on from ``record`` (each reads the recorded run, not a new one)."""
    load = record.load
    steps = []
    if not explained:
        steps.append(
            (
                f"scenarios {number} --explain",
                f"the root cause, all the evidence from run {record.id}, and the fix",
            )
        )
    if not fixed:
        steps.append(
            (
                f"scenarios {number} --fixed",
                f"the whole fix on the same load and seed ({load.jobs:,} jobs, "
                f"{load.workers} workers, {load.duration:g} s, seed {load.seed}), side by side "
                "with this run",
            )
        )
    steps.append((f"scenarios {number} --replay", "this run's board again, as it was drawn"))
    steps.append(
        (
            f"scenarios {number} --solution{_load_flags(record)}",
            "your candidate/solution.py under the same load",
        )
    )
    return Group(
        *(
            Text.assemble(("  " + command, "bold cyan"), "\n", (f"      {what}", "dim"))
            for command, what in steps
        )
    )


def _load_flags(record: RunRecord) -> str:
    """The options that give ``record``'s load, beyond the defaults."""
    load, flags = record.load, []
    for flag, value, default in (
        ("--jobs", load.jobs, DEFAULT_JOBS),
        ("--workers", load.workers, DEFAULT_WORKERS),
        ("--duration", load.duration, DEFAULT_DURATION),
        ("--seed", load.seed, DEFAULT_SEED),
    ):
        if value != default:
            flags.append(f"{flag} {value:g}")
    if record.dialect != DatabaseConfig(url=resolve_database_url(None)).dialect:
        flags.append(f"--db {record.dialect}")
    return "".join(f" {flag}" for flag in flags)
