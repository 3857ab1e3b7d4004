"""What a recorded session shows: each task's state over time, the mistakes met on the way, the
hints, the drills, the design notes, the final code, and the evidence for each concept the
interview looks for. A pure function of the record (``summarize``): the report only draws it.

Times are seconds from the session's start. A task's first attempt is its first verdict other
than "not started"; its time on task runs from there to its first full-tier pass, the figure the
interview guide suggests minutes for. A mistake is a first diagnosis a task failed with; it is
fixed when the task's next verdict on that tier passes or fails with another diagnosis, and the
saves it took are the saves between.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import Any

from ..tasks import LETTERS, TaskStatus, title
from .delta import unified
from .design import TEMPLATE
from .history import Event, SessionLog

__all__ = [
    "CONCEPTS",
    "GUIDE_MINUTES",
    "Concept",
    "Mistake",
    "Segment",
    "SessionSummary",
    "TaskSummary",
    "summarize",
]

#: The interview guide's suggested minutes per task.
GUIDE_MINUTES: dict[str, int] = {"A": 10, "B": 8, "C": 10, "D": 12}

#: The states a task's row shows over time, as the timeline draws them.
STATES = ("not started", "failing", "passing (fast tier)", "passing (full tier)")

#: Concept -> (the tasks that exercise it, the drills that do).
#: The stretch tasks count where they were tried: the reaper's races (F) and the shared rate's
#: compare-and-set (G) are concurrency control; the poison job (F, drill 4) is error handling.
CONCEPTS: dict[str, tuple[str, tuple[int, ...]]] = {
    "Concurrency control": ("ADFG", (1, 2)),
    "Idempotency": ("BCD", (2,)),
    "Error handling": ("CDF", (4,)),
    "Bulk operations": ("BF", (1,)),
    "Transactions": ("ABDG", (3,)),
    "Rate limiting": ("CG", ()),
    "Observability": ("", (1, 2, 3, 4)),
}


@dataclass(frozen=True)
class Segment:
    task: str
    state: str
    start: float
    end: float


@dataclass(frozen=True)
class Mistake:
    task: str
    diagnosis: str
    tier: str
    met_at: float
    met_save: int
    fixed_at: float | None = None
    fixed_save: int | None = None
    fix: str = ""  # the diff of the save that fixed it

    @property
    def saves_to_fix(self) -> int | None:
        return None if self.fixed_save is None else self.fixed_save - self.met_save


@dataclass
class TaskSummary:
    task: str
    first_attempt: float | None = None
    full_pass: float | None = None
    verdicts: int = 0
    hints: int = 0  # the highest level opened in the session

    @property
    def time_on_task(self) -> float | None:
        if self.full_pass is None:
            return None
        return self.full_pass - (self.first_attempt or 0.0)

    @property
    def guide_minutes(self) -> int | None:
        return GUIDE_MINUTES.get(self.task)


@dataclass(frozen=True)
class Concept:
    name: str
    evidence: list[str]


@dataclass
class SessionSummary:
    id: int
    kind: str
    started: float  # Unix time
    length: float  # seconds
    interview: bool
    ended: str  # how it ended
    saves: list[Event] = field(default_factory=list)
    phases: list[tuple[str, float, float]] = field(default_factory=list)
    segments: list[Segment] = field(default_factory=list)
    tasks: dict[str, TaskSummary] = field(default_factory=dict)
    mistakes: list[Mistake] = field(default_factory=list)
    hints: list[tuple[float, str, int, str]] = field(default_factory=list)  # at, task, level, by
    timelines: list[tuple[float, str]] = field(default_factory=list)
    drills: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    design: str | None = None
    design_is_template: bool = False
    final_code: str | None = None
    concepts: list[Concept] = field(default_factory=list)


def summarize(log: SessionLog) -> SessionSummary:
    info = log.info
    t0 = info.started

    def rel(event: Event) -> float:
        return round(event.at - t0, 3)

    end = info.until - t0
    ended = (
        "running"
        if info.running
        else ("quit" if info.ended is not None else "never said it ended (closed or crashed)")
    )
    summary = SessionSummary(info.id, info.kind, t0, end, info.interview, ended)
    summary.saves = log.of("save")
    summary.phases = _phases(log, rel, end)
    summary.tasks = {task: TaskSummary(task) for task in LETTERS}
    versions = log.versions()
    diffs = {  # save -> its change, as a unified diff
        event.id: unified(before, after)
        for (_, before), (event, after) in itertools.pairwise(versions)
        if event is not None
    }

    save_index = 0
    last_save: Event | None = None
    state: dict[str, tuple[str, float]] = {}
    open_mistakes: dict[tuple[str, str], Mistake] = {}
    for event in log.events:
        if event.kind == "save":
            save_index += 1
            last_save = event
        elif event.kind == "verdict" and event.task in summary.tasks:
            task, data, at = event.task, event.data, rel(event)
            status, tier = str(data.get("status")), str(data.get("tier"))
            row = summary.tasks[task]
            row.verdicts += 1
            passing = status.startswith(TaskStatus.PASSING)
            if status != TaskStatus.NOT_STARTED and row.first_attempt is None:
                row.first_attempt = at
            if passing and tier == "full" and row.full_pass is None:
                row.full_pass = at
            shown = _state(status, tier)
            if shown is not None and state.get(task, ("", 0.0))[0] != shown:
                if task in state:
                    summary.segments.append(Segment(task, state[task][0], state[task][1], at))
                state[task] = (shown, at)
            lines = str(data.get("diagnosis") or "").strip().splitlines()
            diagnosis = lines[0] if lines else ""
            fix = diffs.get(last_save.id, "") if last_save is not None else ""
            if passing:  # a full-tier pass settles what the fast tier said too
                for closed in ("fast", "full") if tier == "full" else ("fast",):
                    if (mistake := open_mistakes.pop((task, closed), None)) is not None:
                        summary.mistakes.append(_fixed(mistake, at, save_index, fix))
            elif status == TaskStatus.FAILING:
                mistake = open_mistakes.get((task, tier))
                if mistake is not None and mistake.diagnosis != diagnosis:
                    summary.mistakes.append(_fixed(mistake, at, save_index, fix))
                    mistake = None
                if mistake is None:
                    open_mistakes[(task, tier)] = Mistake(task, diagnosis, tier, at, save_index)
        elif event.kind == "hint" and event.task:
            level = int(event.data.get("level", 0))
            summary.hints.append((rel(event), event.task, level, event.source))
            if event.task in summary.tasks:
                row = summary.tasks[event.task]
                row.hints = max(row.hints, level)
        elif event.kind == "timeline" and event.task:
            summary.timelines.append((rel(event), event.task))
        elif event.kind == "drill":
            summary.drills.append((rel(event), event.data))
        elif event.kind == "design":
            summary.design = event.text()
    for task, (shown, since) in state.items():
        summary.segments.append(Segment(task, shown, since, max(end, since)))
    summary.mistakes += open_mistakes.values()
    summary.mistakes.sort(key=lambda mistake: (mistake.met_at, mistake.task))
    summary.design_is_template = summary.design is not None and summary.design == TEMPLATE
    summary.final_code = versions[-1][1] if versions else None
    summary.concepts = concepts(summary)
    return summary


def _state(status: str, tier: str) -> str | None:
    if status == TaskStatus.NOT_STARTED:
        return STATES[0]
    if status == TaskStatus.FAILING:
        return STATES[1]
    if status.startswith(TaskStatus.PASSING):
        return STATES[3] if tier == "full" else STATES[2]
    return None


def _fixed(mistake: Mistake, at: float, save: int, fix: str) -> Mistake:
    return Mistake(
        mistake.task,
        mistake.diagnosis,
        mistake.tier,
        mistake.met_at,
        mistake.met_save,
        fixed_at=at,
        fixed_save=save,
        fix=fix,
    )


def _phases(log: SessionLog, rel: Any, end: float) -> list[tuple[str, float, float]]:
    """The interview's parts as (name, start, end); an "ended" part closes the last one."""
    marks = [(str(event.data.get("part")), rel(event)) for event in log.of("phase")]
    phases = []
    for (part, start), (_, stop) in zip(marks, [*marks[1:], ("", end)], strict=True):
        if part.startswith("ended") or part == "time is up":
            continue
        phases.append((part, start, max(start, stop)))
    return phases


def concepts(summary: SessionSummary) -> list[Concept]:
    """For each concept the interview looks for, what the session shows of it: the tasks that
    exercise it (passed or not, when), the mistakes met on them, the hints opened, the drills
    answered. No evidence says so; nothing is scored."""
    out = []
    for name, (tasks, drills) in CONCEPTS.items():
        evidence = []
        for task in tasks:
            row = summary.tasks[task]
            what = f"Task {task} ({title(task)})"
            if row.full_pass is not None:
                evidence.append(f"{what} passed the full tier at {clock(row.full_pass)}.")
            elif row.first_attempt is not None:
                evidence.append(f"{what} attempted at {clock(row.first_attempt)}, not passed.")
            for mistake in summary.mistakes:
                if mistake.task == task:
                    fixed = (
                        f"fixed in {mistake.saves_to_fix} save(s)"
                        if mistake.saves_to_fix is not None
                        else "not fixed in the session"
                    )
                    evidence.append(f"{what} failed with: “{mistake.diagnosis}” ({fixed}).")
            if row.hints:
                evidence.append(f"{what}: hints opened up to level {row.hints}.")
        for at, data in summary.drills:
            if data.get("scenario") in drills:
                verdict = (
                    "right" if data.get("correct") else f"wrong (the answer: {data.get('right')})"
                )
                evidence.append(
                    f"Drill {data.get('scenario')} at {clock(at)}: answered "
                    f"{data.get('given')}, {verdict}."
                )
        if name == "Observability":
            for at, task in summary.timelines:
                evidence.append(f"Opened the race timeline of Task {task} at {clock(at)}.")
        out.append(Concept(name, evidence or ["Nothing in this session shows it."]))
    return out


def clock(seconds: float) -> str:
    """``seconds`` as m:ss."""
    whole = round(seconds)
    return f"{whole // 60}:{whole % 60:02d}"
