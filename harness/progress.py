"""The candidate's progress, kept across restarts in the kata home's store (``kata.sqlite3``).

Per task: when it first passed the full tier (and on which backends), the last status the
grader gave it, and how many hint levels the candidate has seen. Plus the interview in progress,
if any. Nothing is held in memory: every question reads the store, and every change is one short
transaction that changes only its own fields, so that ``dev``, ``hint`` and ``pytest`` running at
once in different shells never undo each other's changes (see ``harness.record.store``). Each
verdict and hint is also appended to the session record (``harness.record.events``).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from .paths import PROJECT_ROOT
from .record.events import Journal
from .record.store import STORE_NAME, Store
from .sql.orm import utcnow
from .tasks import LETTERS, TaskStatus

__all__ = [
    "Interview",
    "Progress",
    "TaskProgress",
    "counts_as_progress",
]


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
    """Load with ``Progress.load(path)``: ``path`` is the store, or the ``progress.json`` of
    earlier versions beside it (migrated into the store once). Every change is saved at once."""

    def __init__(self, store: Store, source: str = "harness") -> None:
        self.store = store
        self.path = store.path
        self.journal = Journal(store, source)

    @classmethod
    def load(cls, path: Path, *, source: str = "harness") -> Progress:
        store_path = path.with_name(STORE_NAME) if path.suffix == ".json" else path
        return cls(Store(store_path), source)

    def save(self) -> None:
        """Kept for callers of earlier versions: every change is saved when it is made."""

    # --- changes -----------------------------------------------------------------------------

    def record_result(
        self,
        task: str,
        status: str,
        *,
        tier: str,
        backend: str,
        when: datetime | None = None,
        diagnosis: str | None = None,
        journal: bool = True,
    ) -> bool:
        """Record what the grader said about ``task``; True when this is its first pass.

        Only a full-tier pass counts as passing the task: the fast tier is watch mode's quick
        first answer, not the bar. With ``journal``, the verdict goes to the session record too
        (a grading process that ``dev`` or ``grade`` started leaves that to its parent)."""
        when = when or utcnow()
        graded = when.isoformat(timespec="seconds")
        first = False
        with self.store.write() as connection:
            _ensure_task(connection, task)
            connection.execute(
                "UPDATE tasks SET last_status = ?, last_graded = ? WHERE task = ?",
                (str(status), graded, task),
            )
            if status == TaskStatus.PASSING and tier == "full":
                row = connection.execute(
                    "SELECT first_passed, backends FROM tasks WHERE task = ?", (task,)
                ).fetchone()
                backends = json.loads(row["backends"])
                if backend not in backends:
                    connection.execute(
                        "UPDATE tasks SET backends = ? WHERE task = ?",
                        (json.dumps([*backends, backend]), task),
                    )
                if row["first_passed"] is None:
                    connection.execute(
                        "UPDATE tasks SET first_passed = ? WHERE task = ?", (graded, task)
                    )
                    first = True
                interview = connection.execute("SELECT started FROM interview").fetchone()
                if interview and when >= datetime.fromisoformat(interview["started"]):
                    connection.execute(
                        "INSERT OR IGNORE INTO interview_passed VALUES (?, ?)", (task, graded)
                    )
            if journal:
                self.journal.verdict(
                    connection, task, str(status), tier=tier, backend=backend, diagnosis=diagnosis
                )
        return first

    def see_hint(self, task: str, level: int) -> None:
        """The candidate opened hint ``level`` of ``task``: the level never goes down."""
        with self.store.write() as connection:
            _ensure_task(connection, task)
            connection.execute(
                "UPDATE tasks SET hint_level = MAX(hint_level, ?) WHERE task = ?", (level, task)
            )
            self.journal.append("hint", task=task, data={"level": level}, connection=connection)

    def start_interview(self, when: datetime | None = None) -> Interview:
        self.interview = Interview(started=(when or utcnow()).isoformat(timespec="seconds"))
        return self.interview

    # --- questions ---------------------------------------------------------------------------

    @property
    def tasks(self) -> dict[str, TaskProgress]:
        tasks = {task: TaskProgress() for task in LETTERS}
        with self.store.read() as connection:
            for row in connection.execute("SELECT * FROM tasks"):
                if row["task"] in LETTERS:
                    tasks[row["task"]] = TaskProgress(
                        first_passed=row["first_passed"],
                        backends=json.loads(row["backends"]),
                        last_status=row["last_status"],
                        last_graded=row["last_graded"],
                        hint_level=row["hint_level"],
                    )
        return tasks

    @property
    def interview(self) -> Interview | None:
        with self.store.read() as connection:
            row = connection.execute("SELECT started FROM interview").fetchone()
            if row is None:
                return None
            passed = dict(connection.execute("SELECT task, at FROM interview_passed").fetchall())
        return Interview(started=row["started"], passed=passed)

    @interview.setter
    def interview(self, interview: Interview | None) -> None:
        """Start ``interview`` (replacing any), or end the one in progress with None."""
        with self.store.write() as connection:
            connection.execute("DELETE FROM interview")
            connection.execute("DELETE FROM interview_passed")
            if interview is not None:
                connection.execute("INSERT INTO interview VALUES (1, ?)", (interview.started,))
                connection.executemany(
                    "INSERT INTO interview_passed VALUES (?, ?)", interview.passed.items()
                )

    def passed(self, task: str) -> bool:
        return self.tasks[task].passed if task in LETTERS else False

    def hint_level(self, task: str) -> int:
        return self.tasks[task].hint_level if task in LETTERS else 0


def _ensure_task(connection: sqlite3.Connection, task: str) -> None:
    connection.execute("INSERT OR IGNORE INTO tasks (task) VALUES (?)", (task,))
