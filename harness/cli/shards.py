"""One grading pass run as several shares at once, seen by the board as one run.

Most of the fast tier's time is the candidate's own waits (backoff, ``retry_after``), not CPU:
graded one test after another it takes several seconds more than graded as six shares forked
at once from the warm server (five shares of every task's tests, the end-to-end test alone).
Each share is an ordinary ``GradeRun`` of ``pytest --kata-shard I/N`` (shares of about equal
length, by each test's measured duration: see ``harness.grading.shares``); ``ShardedRun`` lays
them over each other for the board, the run line and the progress file.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING

from .results import GradeRun, OutputTail, TaskTally, Verdict, all_passing, tally

if TYPE_CHECKING:
    from .grading_process import GradeRequest

__all__ = ["AnyRun", "ShardedRun"]

#: Worse states win: a share that crashed or timed out makes the whole run so.
_WORST_FIRST = ("crashed", "timed out", "cancelled", "running", "done")


class ShardedRun:
    """The shares of one request, as one run (see ``GradeRun`` for the attributes)."""

    def __init__(self, request: GradeRequest, count: int) -> None:
        self.request = request
        self.shards = [
            GradeRun(replace(request, shard=f"{index}/{count}")) for index in range(1, count + 1)
        ]
        self.started = min(shard.started for shard in self.shards)
        self.recorded = False

    @property
    def tier(self) -> str:
        return self.request.tier

    @property
    def backend(self) -> str:
        return self.request.backend

    @property
    def state(self) -> str:
        states = {shard.state for shard in self.shards}
        return next(state for state in _WORST_FIRST if state in states)

    @property
    def running(self) -> bool:
        return any(shard.running for shard in self.shards)

    @property
    def message(self) -> str | None:
        return next((shard.message for shard in self.shards if shard.message), None)

    @property
    def finished(self) -> float | None:
        ends = [shard.finished for shard in self.shards]
        return None if None in ends else max(end for end in ends if end is not None)

    def elapsed(self, now: float | None = None) -> float:
        end = self.finished if self.finished is not None else (now or time.monotonic())
        return max(0.0, end - self.started)

    @property
    def answered_at(self) -> float | None:
        answers = [shard.answered_at for shard in self.shards]
        return None if None in answers else max(a for a in answers if a is not None)

    @property
    def tests(self) -> dict[str, str]:
        return {test: task for shard in self.shards for test, task in shard.tests.items()}

    @property
    def results(self) -> dict[str, Verdict]:
        return {test: verdict for shard in self.shards for test, verdict in shard.results.items()}

    @property
    def current(self) -> str | None:
        return next((shard.current for shard in self.shards if shard.current), None)

    @property
    def output(self) -> OutputTail:
        tail = OutputTail()
        for shard in self.shards:
            if shard.output.lines:
                tail.add("\n".join(shard.output.lines))
            tail.dropped += shard.output.dropped
        return tail

    def tallies(self) -> dict[str, TaskTally]:
        """The shares' results laid over each other and tallied as one run: a task's diagnoses in
        the grader's declared order, as ``pytest`` gives them, whichever share ran which test."""
        merged = tally(self.tests, self.results, [shard.scorecard for shard in self.shards])
        if any(shard.running and not shard.tests for shard in self.shards):
            # A share that has not said what it holds yet may hold more of any task's tests.
            for total in merged.values():
                seen = total.passed + total.failed + total.skipped
                total.expected = max(total.expected, seen + 1)
        return {task: merged[task] for task in sorted(merged)}

    @property
    def all_passing(self) -> bool:
        return all_passing(self.state, self.tallies())


#: What the board and the pipeline take: one run, or one run in shares.
AnyRun = GradeRun | ShardedRun
