"""The candidate's progress, kept across restarts in ``.kata/progress.json``.

Per task: when it first passed the full tier (and on which backends), the last status the
grader gave it, and how many hint levels the candidate has seen. Plus the interview in progress,
if any. The file is rewritten atomically, so that a crash never leaves half a file.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from .paths import PROJECT_ROOT
from .sql.orm import utcnow
from .tasks import LETTERS, TaskStatus

__all__ = [
    "Interview",
    "Progress",
    "TaskProgress",
    "counts_as_progress",
]

#: Tasks the grader reports on: the four functions and the end-to-end run.

_VERSION = 1


def counts_as_progress(solution: Path) -> bool:
    """Whether grading ``solution`` is the candidate's progress, whichever command graded it
    (``pytest``, ``grade``, ``dev``). The harness's own solutions, the reference and the
    catalogue of mistakes under ``fixtures/``, are graded by its tests and demos: passing them is
    nobody's progress (and must never unlock ``harness solution``)."""
    return _HARNESS_SOLUTIONS not in solution.resolve().parents


_HARNESS_SOLUTIONS = PROJECT_ROOT / "fixtures"


@dataclass
class TaskProgress:
    first_passed: str | None = None  # ISO time of the first full-tier pass
    backends: list[str] = field(default_factory=list)  # dialects it passed the full tier on
    last_status: str | None = None  # "not started" | "failing" | "passing"
    last_graded: str | None = None
    hint_level: int = 0

    @property
    def passed(self) -> bool:
        return self.first_passed is not None


@dataclass
class Interview:
    started: str  # ISO time
    passed: dict[str, str] = field(default_factory=dict)  # task -> ISO time, during the interview

    @property
    def started_at(self) -> datetime:
        return datetime.fromisoformat(self.started)


class Progress:
    """Load with ``Progress.load(path)``; every change is saved at once."""

    def __init__(
        self,
        path: Path,
        tasks: dict[str, TaskProgress] | None = None,
        interview: Interview | None = None,
    ) -> None:
        self.path = path
        self.tasks = {task: TaskProgress() for task in LETTERS}
        self.tasks.update(tasks or {})
        self.interview = interview

    @classmethod
    def load(cls, path: Path) -> Progress:
        """The progress saved at ``path``; a missing or unreadable file is a fresh start."""
        try:
            data = json.loads(path.read_text())
            tasks = {
                task: TaskProgress(**info)
                for task, info in data.get("tasks", {}).items()
                if task in LETTERS
            }
            interview = Interview(**data["interview"]) if data.get("interview") else None
        except (OSError, ValueError, TypeError, KeyError):
            return cls(path)
        return cls(path, tasks, interview)

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data: dict[str, Any] = {
            "version": _VERSION,
            "tasks": {task: asdict(info) for task, info in self.tasks.items()},
            "interview": asdict(self.interview) if self.interview else None,
        }
        temporary = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data, indent=2) + "\n")
        os.replace(temporary, self.path)

    # --- changes -----------------------------------------------------------------------------

    def record_result(
        self, task: str, status: str, *, tier: str, backend: str, when: datetime | None = None
    ) -> bool:
        """Record what the grader said about ``task``; True when this is its first pass.

        Only a full-tier pass counts as passing the task: the fast tier is watch mode's quick
        first answer, not the bar."""
        when = when or utcnow()
        info = self.tasks.setdefault(task, TaskProgress())
        info.last_status, info.last_graded = status, when.isoformat(timespec="seconds")
        first = False
        if status == TaskStatus.PASSING and tier == "full":
            if backend not in info.backends:
                info.backends.append(backend)
            if info.first_passed is None:
                info.first_passed = info.last_graded
                first = True
            if (
                self.interview
                and task not in self.interview.passed
                and when >= self.interview.started_at
            ):
                self.interview.passed[task] = info.last_graded
        self.save()
        return first

    def see_hint(self, task: str, level: int) -> None:
        info = self.tasks.setdefault(task, TaskProgress())
        if level > info.hint_level:
            info.hint_level = level
            self.save()

    def start_interview(self, when: datetime | None = None) -> Interview:
        self.interview = Interview(started=(when or utcnow()).isoformat(timespec="seconds"))
        self.save()
        return self.interview

    # --- questions ---------------------------------------------------------------------------

    def passed(self, task: str) -> bool:
        return task in self.tasks and self.tasks[task].passed

    def hint_level(self, task: str) -> int:
        return self.tasks[task].hint_level if task in self.tasks else 0
