"""``--report PATH``: the run watched (and its fixed run) written as one HTML page."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..explanations import Explanation
from ..record import RunRecord

if TYPE_CHECKING:
    from ..drill import Drill

__all__ = ["write_report"]


def write_report(
    drill: Drill, watched: RunRecord, fixed: RunRecord | None, explanation: Explanation
) -> None:
    """Write the page ``--report`` asked for, if it did."""
    if drill.options.report is None:
        return
    try:
        from ..report import write_report as write_page  # plotly is only needed here

        path = write_page(drill.options.report, drill.incident, watched, fixed, explanation)
    except ImportError as error:
        drill.terminal.error(f"--report needs plotly ({error}): pip install -e .")
        return
    drill.terminal.show(f"The report of run {watched.id} is in {path.resolve()}.")
