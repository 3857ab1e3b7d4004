"""``--solution``: the candidate's solution under the incident's load, judged by the flaw's
signature (beside the fix's run when the incident needs one to compare with)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from harness.worker.solutions import load_solution

from .. import store
from ..exits import EXIT_FLAWED, EXIT_UNLOADABLE
from ..explanations import explain
from ..record import RunRecord
from ..signatures import Verdict, signature
from .explain import show_explanation
from .fixed import compare

if TYPE_CHECKING:
    from ..drill import Drill

__all__ = ["run_solution"]


def run_solution(drill: Drill, path: Path) -> int:
    options = drill.options
    try:
        solution = load_solution(path)
    except Exception as error:  # the candidate's file: a syntax error, a missing function
        drill.terminal.error(f"cannot load {path}: {error}")
        return EXIT_UNLOADABLE
    drill.introduce(drill.load, drill.config.describe())
    ours = drill.measure(drill.incident.variant("solution", solution), drill.load)
    baseline: RunRecord | None = None
    if not ours.aborted and (options.fixed or drill.incident.needs_baseline):
        baseline = drill.measure(drill.incident.variant("fixed"), drill.load, fixed_of=ours.id)
        compare(drill, ours, baseline)
    verdict = signature(ours, baseline)
    status = _judge(drill, ours, verdict)
    explanation = None
    if options.explain:
        watched = store.latest(drill.incident.number)
        if watched is None:
            drill.terminal.show(
                f"[dim](no recorded run of incident {drill.incident.number} to explain: "
                f"run `scenarios {drill.incident.number}` first)[/]"
            )
        else:
            explanation = explain(watched, store.fixed_for(watched))
            show_explanation(drill, watched, explanation)
    if drill.terminal.as_json:
        runs = {"solution": ours} if baseline is None else {"solution": ours, "fixed": baseline}
        drill.terminal.emit_json(drill.document(runs, None, explanation, True, baseline))
    return status


def _judge(drill: Drill, run: RunRecord, verdict: Verdict) -> int:
    name = Path(run.solution).name
    if run.aborted:
        drill.terminal.show(
            f"[bold red]Your {name} could not run under this load:[/] {run.aborted}"
        )
        return EXIT_FLAWED
    if verdict.shows_flaw:
        drill.terminal.show(
            f"[bold red]Your {name} shows incident {drill.incident.number}'s "
            f"flaw:[/] {verdict.summary}."
        )
        if "reaper" in run.notes:
            drill.terminal.show(
                "[dim]Its recover_stalled_jobs (Task F) is not written yet, so production's "
                "reaper ran in its place: write it, and run this again.[/]"
            )
        return EXIT_FLAWED
    drill.terminal.show(
        f"[bold green]Your {name} does not show incident "
        f"{drill.incident.number}'s flaw:[/] {verdict.summary}."
    )
    return 0
