"""``--replay``: a recorded run's board drawn again as it was (and its fixed run's)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .. import store
from ..debrief import next_steps
from ..exits import EXIT_UNLOADABLE
from ..explanations import explain
from ..record import RunRecord
from ..summary import plain_summary, verified_line
from .fixed import compare
from .report import write_report

if TYPE_CHECKING:
    from ..drill import Drill

__all__ = ["redraw", "replay"]


def replay(drill: Drill) -> int:
    options = drill.options
    watched = (
        store.load(options.run)
        if options.run is not None
        else store.latest(
            drill.incident.number,
            variants=("flawed", "solution"),
            dialect=drill.config.dialect if options.db_given else None,
            **options.explicit,
        )
    )
    if watched is None:
        drill.terminal.error(
            f"no recorded run of incident {drill.incident.number} to replay: run "
            f"`scenarios {drill.incident.number}` first"
        )
        return EXIT_UNLOADABLE
    drill.use_backend_of(watched)
    drill.introduce_recorded(watched)
    redraw(drill, watched)
    fixed = store.fixed_for(watched)
    if fixed is not None:
        redraw(drill, fixed)
        compare(drill, watched, fixed)
    write_report(drill, watched, fixed, explain(watched, fixed))
    drill.terminal.rule("Next")
    drill.terminal.show(
        next_steps(drill.incident.number, watched, explained=False, fixed=fixed is not None)
    )
    if drill.terminal.as_json:
        runs = {watched.variant: watched}
        if fixed is not None:
            runs["fixed"] = fixed
        drill.terminal.emit_json(drill.document(runs, None, None, False))
    return 0


def redraw(drill: Drill, run: RunRecord) -> None:
    """Draw ``run``'s board as it was drawn (``--speed`` times faster); one summary when
    the output is not a terminal."""
    with drill.terminal.board() as draw:
        if draw is not None:
            previous = 0.0
            for snapshot in run.timeline:
                time.sleep(max(0.0, snapshot.elapsed - previous) / drill.options.speed)
                previous = snapshot.elapsed
                draw(snapshot)
    if not drill.terminal.live:
        drill.terminal.show(plain_summary(run.snapshot), soft_wrap=True, markup=False)
    drill.terminal.show(verified_line(run, recorded=True))
