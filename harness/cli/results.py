"""What a grading run found, as it goes: test results, per-task tallies, the solution's output."""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..grading.precedence import UNRANKED
from ..tasks import TaskStatus, settled, task_status

if TYPE_CHECKING:
    from .grading_process import GradeRequest

__all__ = ["OUTPUT_LINES", "GradeRun", "OutputTail", "TaskTally", "Verdict", "all_passing"]

#: Lines of the solution's own output kept for the board.
OUTPUT_LINES = 20


@dataclass(frozen=True)
class Verdict:
    id: str
    task: str
    outcome: str  # "pass" | "fail" | "skip"
    diagnosis: str | None = None
    duration: float = 0.0
    advice: tuple[str, ...] = ()  # not a failure: what a reviewer would still point out
    timeline: tuple[str, ...] = ()  # a race's timeline, as the grader printed it
    #: The test's place in the grader's declared order (``harness.grading.precedence``).
    rank: tuple[Any, ...] = ()

    @property
    def name(self) -> str:
        return self.id.rsplit("::", 1)[-1]


@dataclass
class TaskTally:
    """One task's results within one run."""

    task: str
    expected: int = 0
    passed: int = 0
    failed: int = 0
    skipped: int = 0
    diagnoses: list[str] = field(default_factory=list)
    advice: list[str] = field(default_factory=list)
    #: The timeline behind the first diagnosis, when it was a race.
    timeline: list[str] = field(default_factory=list)

    def advise(self, advice: list[str] | tuple[str, ...]) -> None:
        self.advice += [text for text in advice if text not in self.advice]

    @property
    def complete(self) -> bool:
        return self.expected > 0 and self.passed + self.failed + self.skipped >= self.expected

    @property
    def status(self) -> TaskStatus:
        """As the scorecard says it: passing, failing or not started."""
        return task_status(self.passed, self.failed, self.diagnoses)

    @property
    def diagnosis(self) -> str | None:
        return self.diagnoses[0] if self.diagnoses else None


#: A test the stream did not rank comes after every ranked one.
_UNRANKED = tuple(UNRANKED)


def tally(
    tests: dict[str, str], results: dict[str, Verdict], scorecards: list[dict[str, Any] | None]
) -> dict[str, TaskTally]:
    """Per-task tallies of one run (or of the shares of one run, laid over each other). A task's
    diagnoses are in the grader's declared order, whatever order the results came in: the first
    is the one ``pytest``'s scorecard shows too (``harness.grading.precedence``)."""
    tallies: dict[str, TaskTally] = {}
    for task in tests.values():
        tallies.setdefault(task, TaskTally(task)).expected += 1
    for result in sorted(results.values(), key=lambda r: r.rank or _UNRANKED):
        entry = tallies.setdefault(result.task, TaskTally(result.task))
        if result.outcome == "pass":
            entry.passed += 1
        elif result.outcome == "fail":
            entry.failed += 1
            if result.diagnosis:
                if not entry.diagnoses:
                    entry.timeline = list(result.timeline)
                entry.diagnoses.append(result.diagnosis)
        else:
            entry.skipped += 1
        entry.advise(result.advice)
    # The grader's JSON has every task's advice, also when the event stream had none.
    for scorecard in scorecards:
        for task, info in (scorecard or {}).get("tasks", {}).items():
            if task in tallies and isinstance(info, dict):
                tallies[task].advise(info.get("advice") or [])
    return {task: tallies[task] for task in sorted(tallies) if task}


def all_passing(state: str, tallies: dict[str, TaskTally]) -> bool:
    """A run that finished and found every task it graded passing (a stretch task not started
    is not in the way: ``harness.tasks.settled``)."""
    return (
        state == "done"
        and bool(tallies)
        and all(settled(task, t.status) for task, t in tallies.items())
    )


class OutputTail:
    """The last ``limit`` lines of what the solution printed, and how many were dropped."""

    def __init__(self, limit: int = OUTPUT_LINES) -> None:
        self.lines: deque[str] = deque(maxlen=limit)
        self.dropped = 0
        self._last_label: str | None = None

    def add(self, text: str, label: str | None = None) -> None:
        new = text.splitlines()
        if label and label != self._last_label:
            new.insert(0, f"── {label}")
            self._last_label = label
        overflow = max(0, len(self.lines) + len(new) - (self.lines.maxlen or 0))
        self.dropped += overflow
        self.lines.extend(new)

    @property
    def truncated(self) -> bool:
        return self.dropped > 0


@dataclass
class GradeRun:
    """A grading pass as it goes; the board reads it while it runs."""

    request: GradeRequest
    started: float = field(default_factory=time.monotonic)
    finished: float | None = None
    state: str = "running"  # running | done | timed out | crashed | cancelled
    message: str | None = None
    tests: dict[str, str] = field(default_factory=dict)  # test id -> task, in run order
    results: dict[str, Verdict] = field(default_factory=dict)
    current: str | None = None
    output: OutputTail = field(default_factory=OutputTail)
    raw: deque[str] = field(default_factory=lambda: deque(maxlen=400))
    returncode: int | None = None
    scorecard: dict[str, Any] | None = None  # the grader's JSON results
    answered_at: float | None = None  # when the last verdict came (the process still exits)
    recorded: bool = False  # its verdicts are in the progress file
    ranks: dict[str, tuple[Any, ...]] = field(default_factory=dict)  # test id -> its rank

    @property
    def tier(self) -> str:
        return self.request.tier

    @property
    def backend(self) -> str:
        return self.request.backend

    @property
    def running(self) -> bool:
        return self.state == "running"

    def elapsed(self, now: float | None = None) -> float:
        end = self.finished if self.finished is not None else (now or time.monotonic())
        return max(0.0, end - self.started)

    def tallies(self) -> dict[str, TaskTally]:
        return tally(self.tests, self.results, [self.scorecard])

    @property
    def all_passing(self) -> bool:
        return all_passing(self.state, self.tallies())

    # --- events --------------------------------------------------------------------------------

    def apply(self, event: dict[str, Any]) -> None:
        kind = event.get("event")
        if kind == "collected":
            if not self.tests:  # once: the tests are collected before any solution code runs
                self.tests = {test["id"]: test["task"] for test in event["tests"]}
                self.ranks = {test["id"]: tuple(test.get("rank") or ()) for test in event["tests"]}
        elif kind == "start":
            # Each collected test starts once (a line repeated, or of no test, is not progress).
            if event["id"] in self.tests and event["id"] not in self.results:
                self.current = event["id"]
        elif kind == "result":
            if event["id"] not in self.tests:
                return
            self.results[event["id"]] = Verdict(
                event["id"],
                event.get("task") or self.tests.get(event["id"], ""),
                event["outcome"],
                event.get("diagnosis"),
                event.get("duration", 0.0),
                tuple(event.get("advice") or ()),
                tuple(event.get("timeline") or ()),
                tuple(event.get("rank") or self.ranks.get(event["id"], ())),
            )
            if self.current == event["id"]:
                self.current = None
            if self.answered_at is None and len(self.results) >= len(self.tests):
                self.answered_at = time.monotonic()
        elif kind == "output":
            self.output.add(event["text"], label=event["id"].rsplit("::", 1)[-1])

    def absorb_scorecard(self, data: dict[str, Any]) -> None:
        """The grader's JSON, written once the grading process has ended: the authority on
        results. The event stream only shows them as they come (and may have been written to by
        what it reports on); where the two differ, or the stream has no result, the JSON's is
        kept, so that the board and ``pytest`` give one verdict."""
        self.scorecard = data
        for index, test in enumerate(data.get("tests", [])):
            test_id = test.get("id") or f"{test['name']}#{index}"
            verdict = Verdict(
                test_id,
                test["task"],
                test["status"],
                test.get("message"),
                test.get("duration", 0.0),
                tuple(test.get("advice") or ()),
                rank=tuple(test.get("rank") or self.ranks.get(test_id, ())),
            )
            seen = self.results.get(test_id)
            if (
                seen is not None
                and seen.outcome == verdict.outcome
                and (verdict.diagnosis or "").startswith(seen.diagnosis or "")
            ):
                continue  # the same (the stream's diagnosis may be cut), with the timeline drawn
            self.tests.setdefault(test_id, test["task"])
            self.results[test_id] = verdict

    def stop(self, state: str, message: str | None = None) -> None:
        """End the run as ``state``; a test still going fails with ``message``."""
        self.state, self.message = state, message
        self.finished = time.monotonic()
        current = self.current
        if current and current not in self.results and message:
            task = self.tests.get(current, "")
            self.results[current] = Verdict(current, task, "fail", message)
        self.current = None
