"""``--fixed``: the fix's run beside the run watched (the same load and seed), and whether it
clears the symptom the page names."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..comparison import render_comparison
from ..record import RunRecord
from ..signatures import symptom

if TYPE_CHECKING:
    from ..drill import Drill

__all__ = ["compare", "show_verdict"]


def compare(drill: Drill, watched: RunRecord, fixed: RunRecord) -> None:
    drill.terminal.show(
        render_comparison(
            watched.snapshot,
            fixed.snapshot,
            labels=("watched" if watched.variant == "flawed" else watched.label, fixed.label),
        )
    )


def show_verdict(drill: Drill, watched: RunRecord, fixed: RunRecord) -> None:
    verdict = symptom(watched, fixed)
    if verdict.shows_flaw:
        drill.terminal.show(
            f"[bold red]The fix did not clear the page's symptom:[/] {verdict.summary}."
        )
    else:
        drill.terminal.show(f"[bold green]The fix clears the page's symptom:[/] {verdict.summary}.")
