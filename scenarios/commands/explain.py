"""``--explain``: the root cause, the evidence in the run watched, its jobs' histories, the fix."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.text import Text

from ..debrief import bullets
from ..explanations import Explanation, history_lines
from ..record import RunRecord

if TYPE_CHECKING:
    from ..drill import Drill

__all__ = ["show_explanation"]


def show_explanation(drill: Drill, run: RunRecord, explanation: Explanation) -> None:
    drill.terminal.rule("Root cause")
    drill.terminal.show(explanation.root_cause)
    drill.terminal.rule(f"Evidence from this run ({run.id})")
    drill.terminal.show(bullets([*explanation.evidence, *explanation.fixed]))
    if explanation.jobs:
        drill.terminal.rule("The jobs that show it")
        # Drawn again at the terminal's width: a line folded by the terminal breaks mid-word.
        jobs = history_lines(run, limit=2, width=drill.terminal.width)
        drill.terminal.show(Text("\n".join(jobs)))
    drill.terminal.rule("The fix")
    drill.terminal.show(explanation.fix, markup=False)
    drill.terminal.show(f"[dim]The fixed code is at the bottom of {drill.incident.path}.[/]")
