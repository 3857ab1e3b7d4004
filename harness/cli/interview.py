"""Interview mode's clock: sixty minutes in four parts, the summary, and the end.

An interview ends when its session quits or its hour is up, and nothing graded afterwards counts
towards it: it leaves the progress file (whose grading records passes into the interview in
progress) for ``interviews.jsonl`` next to it, where ``status`` still finds the last one.
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from ..progress import Interview, Progress
from ..sql.orm import utcnow
from ..tasks import LETTERS

__all__ = [
    "PARTS",
    "TOTAL_MINUTES",
    "EndedInterview",
    "InterviewClock",
    "SummaryLine",
    "clock",
    "end_interview",
    "last_interview",
    "summary",
]

#: The parts of the hour, as (name, minutes).
PARTS: tuple[tuple[str, int], ...] = (
    ("design", 15),
    ("implement", 25),
    ("debug", 15),
    ("wrap up", 5),
)
TOTAL_MINUTES = sum(minutes for _, minutes in PARTS)
#: How many times faster than real time the interview's clock runs: for tests and demos of the
#: whole hour (60 makes it a minute). Every part keeps its share of the hour.
SPEED_ENV = "KATA_INTERVIEW_SPEED"


def speed() -> float:
    try:
        return max(1.0, float(os.environ.get(SPEED_ENV, "1")))
    except ValueError:
        return 1.0


@dataclass(frozen=True)
class InterviewClock:
    elapsed: float  # seconds since the start
    part: int  # index into PARTS; len(PARTS) once time is up

    @property
    def finished(self) -> bool:
        return self.part >= len(PARTS)

    @property
    def part_name(self) -> str:
        return "time is up" if self.finished else PARTS[self.part][0]

    @property
    def part_left(self) -> float:
        end = sum(minutes for _, minutes in PARTS[: self.part + 1]) * 60
        return max(0.0, end - self.elapsed)

    @property
    def total_left(self) -> float:
        return max(0.0, TOTAL_MINUTES * 60 - self.elapsed)


def clock(started: datetime, now: datetime) -> InterviewClock:
    elapsed = max(0.0, (now - started).total_seconds()) * speed()
    boundary = 0
    for index, (_, minutes) in enumerate(PARTS):
        boundary += minutes * 60
        if elapsed < boundary:
            return InterviewClock(elapsed, index)
    return InterviewClock(elapsed, len(PARTS))


@dataclass(frozen=True)
class SummaryLine:
    task: str
    passed_after: float | None  # seconds into the interview, None if it did not pass
    part: str | None


def summary(interview: Interview | EndedInterview, tasks: str = LETTERS) -> list[SummaryLine]:
    """What passed (the full tier) during the interview, and when."""
    lines = []
    for task in tasks:
        when = interview.passed.get(task)
        if when is None:
            lines.append(SummaryLine(task, None, None))
            continue
        at = clock(interview.started_at, datetime.fromisoformat(when))
        lines.append(SummaryLine(task, at.elapsed, at.part_name))
    return lines


def minutes(seconds: float) -> str:
    """``seconds`` as m:ss."""
    whole = int(seconds)
    return f"{whole // 60}:{whole % 60:02d}"


# --- the end -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EndedInterview:
    started: str  # ISO time
    ended: str  # ISO time
    why: str  # "you quit", "time is up", ...
    passed: dict[str, str] = field(default_factory=dict)  # task -> ISO time, before the end

    @property
    def started_at(self) -> datetime:
        return datetime.fromisoformat(self.started)

    @property
    def length(self) -> float:
        """Seconds from the start to the end."""
        return max(0.0, (datetime.fromisoformat(self.ended) - self.started_at).total_seconds())


def end_interview(progress: Progress, log: Path, why: str) -> EndedInterview | None:
    """End the interview in progress (at the end of its hour, if that came first): append it to
    ``log`` and take it out of ``progress``. None when there is none."""
    current = progress.interview
    if current is None:
        return None
    ended = min(utcnow(), current.started_at + timedelta(minutes=TOTAL_MINUTES) / speed())
    passed = {
        task: when for task, when in current.passed.items() if datetime.fromisoformat(when) <= ended
    }
    finished = EndedInterview(current.started, ended.isoformat(timespec="seconds"), why, passed)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("a", encoding="utf-8") as lines:
        lines.write(json.dumps(asdict(finished)) + "\n")
    progress.interview = None
    progress.save()
    return finished


def last_interview(log: Path) -> EndedInterview | None:
    """The interview that ended last, from ``log``; None if none did (or the log is damaged)."""
    with contextlib.suppress(OSError, ValueError, TypeError, IndexError):
        lines = [line for line in log.read_text(encoding="utf-8").splitlines() if line.strip()]
        return EndedInterview(**json.loads(lines[-1]))
    return None
