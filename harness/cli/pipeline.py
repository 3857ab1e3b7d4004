"""From a save to a verdict: the fast tier, then the full tier, then the second backend.

Each stage grades only what the one before it passed: the full tier re-checks the tasks that
passed the fast tier under the real loads, and the second backend re-checks what passed the full
tier. ``Scoreboard`` turns the runs of the current version of the file, laid over what the board
said about earlier versions, into one row per task; and it records verdicts in the progress file.
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Callable

from ..progress import Progress
from ..tasks import LETTERS, TaskStatus
from .board import RunLine, TaskRow
from .forkserver import ForkServer
from .grading_process import GradeRequest, Spawner, run_grading
from .results import GradeRun
from .shards import AnyRun, ShardedRun

__all__ = ["Scoreboard", "grade_pipeline"]


#: Shares of the fast tier graded at once (see shards.py): its tests mostly wait on the
#: candidate's backoff, so six fit two cores (measured in benchmarks/bench_watch.py).
FAST_SHARDS = 6


def _passing(run: AnyRun) -> str:
    return "".join(
        task
        for task, tally in run.tallies().items()
        if tally.complete and tally.status == TaskStatus.PASSING
    )


async def grade_pipeline(
    request: GradeRequest,
    *,
    second_db: str | None = None,
    start: str = "fast",
    on_start: Callable[[AnyRun], None],
    on_update: Callable[[AnyRun], None],
    spawner: Spawner | None = None,
) -> None:
    """Grade ``request.solution``: the fast tier (unless ``start`` is "full"), the full tier of
    what passed it, and the full tier on ``second_db`` of what passed on the main backend."""

    async def stage(stage_request: GradeRequest) -> GradeRun:
        run = GradeRun(stage_request)
        on_start(run)
        return await run_grading(stage_request, on_update=on_update, run=run, spawner=spawner)

    async def shared(stage_request: GradeRequest, count: int) -> ShardedRun:
        run = ShardedRun(stage_request, count)
        on_start(run)
        await asyncio.gather(
            *(
                run_grading(
                    shard.request, on_update=lambda _: on_update(run), run=shard, spawner=spawner
                )
                for shard in run.shards
            )
        )
        on_update(run)
        return run

    tasks = request.tasks
    if start == "fast":
        fast_request = dataclasses.replace(request, tier="fast")
        # In shares only from the warm fork server: cold processes would cost more than they
        # save on a small machine.
        warm = isinstance(spawner, ForkServer) and spawner.failures < 3
        fast: AnyRun = (
            await shared(fast_request, FAST_SHARDS) if warm else await stage(fast_request)
        )
        tasks = _passing(fast)
        if fast.state != "done" or not tasks:
            return
    full = await stage(dataclasses.replace(request, tier="full", tasks=tasks, focus=""))
    if second_db and full.state == "done" and (passed := _passing(full)):
        await stage(
            dataclasses.replace(request, tier="full", tasks=passed, focus="", db_url=second_db)
        )


class Scoreboard:
    """The task rows of the board, and the progress they imply."""

    def __init__(self, main_backend: str, progress: Progress | None = None) -> None:
        self.main_backend = main_backend
        self.progress = progress
        self.base: dict[str, TaskRow] = {task: TaskRow(task) for task in LETTERS}
        self.runs: list[AnyRun] = []
        self.static: dict[str, str] = {}  # task -> diagnosis, told without grading

    def new_version(self) -> None:
        """The file changed: what the board says now is about an earlier version."""
        self.base = {
            task: dataclasses.replace(row, grading=False, stale=row.status != "not graded")
            for task, row in self.rows().items()
        }
        self.runs = []
        self.static = {}

    def not_started(self, stubs: dict[str, str]) -> None:
        """Tasks known to be "not started" without grading them (see sources.stub_tasks)."""
        self.static = dict(stubs)
        if self.progress is not None:
            for task in stubs:
                self.progress.record_result(
                    task, TaskStatus.NOT_STARTED, tier="fast", backend=self.main_backend
                )

    def add(self, run: AnyRun) -> None:
        self.runs.append(run)

    def rows(self) -> dict[str, TaskRow]:
        rows = {task: dataclasses.replace(row) for task, row in self.base.items()}
        for task, diagnosis in self.static.items():
            rows[task] = TaskRow(task, TaskStatus.NOT_STARTED, diagnosis=diagnosis, tier="fast")
        for run in self.runs:
            second = run.backend != self.main_backend
            for task, tally in run.tallies().items():
                row = rows.setdefault(task, TaskRow(task))
                if tally.status == "no tests" and tally.complete:
                    continue
                if not (tally.complete or tally.failed):
                    row.grading = row.grading or run.running  # no verdict yet
                    continue
                row.grading = run.running and not tally.complete
                if second:
                    row.advice += [text for text in tally.advice if text not in row.advice]
                    if tally.failed:
                        row.status = TaskStatus.FAILING
                        row.diagnosis = f"on {run.backend}: {tally.diagnosis}"
                    elif row.status == TaskStatus.PASSING:
                        row.status = "passing on both backends"
                    continue
                row.status, row.diagnosis = tally.status, tally.diagnosis
                row.advice = list(tally.advice)
                row.timeline = list(tally.timeline)
                row.passed, row.total = tally.passed, tally.passed + tally.failed
                row.tier, row.stale = run.tier, False
            if run.running and not run.tests:  # not collected yet: all it will grade is pending
                for task in run.request.tasks or LETTERS:
                    rows[task].grading = True
        return rows

    def run_lines(self, now: float) -> list[RunLine]:
        return [
            RunLine(
                run.tier,
                run.backend,
                run.state,
                run.elapsed(now),
                len(run.results),
                len(run.tests),
                run.current,
                failed=sum(tally.failed for tally in run.tallies().values()),
            )
            for run in self.runs
        ]

    def record(self, run: AnyRun) -> None:
        """Write the verdicts of a finished ``run`` to the progress file (once per run)."""
        if self.progress is None or run.running or run.state == "cancelled" or run.recorded:
            return
        run.recorded = True
        for task, tally in run.tallies().items():
            if not (tally.complete or tally.failed) or tally.status == "no tests":
                continue  # stopped before its verdict
            status = tally.status
            if run.backend != self.main_backend and status != TaskStatus.PASSING:
                continue  # the main backend's verdict stands; the board shows the difference
            self.progress.record_result(
                task, status, tier=run.tier, backend=run.backend, diagnosis=tally.diagnosis
            )
