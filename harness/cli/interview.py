"""Interview mode's clock: sixty minutes in four parts, and the summary at the end."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from .progress import Interview

__all__ = ["PARTS", "TOTAL_MINUTES", "InterviewClock", "SummaryLine", "clock", "summary"]

#: The parts of the hour, as (name, minutes).
PARTS: tuple[tuple[str, int], ...] = (("design", 15), ("implement", 25), ("debug", 15),
                                      ("wrap up", 5))
TOTAL_MINUTES = sum(minutes for _, minutes in PARTS)


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
        end = sum(minutes for _, minutes in PARTS[:self.part + 1]) * 60
        return max(0.0, end - self.elapsed)

    @property
    def total_left(self) -> float:
        return max(0.0, TOTAL_MINUTES * 60 - self.elapsed)


def clock(started: datetime, now: datetime) -> InterviewClock:
    elapsed = max(0.0, (now - started).total_seconds())
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


def summary(interview: Interview, tasks: str = "ABCDE") -> list[SummaryLine]:
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
