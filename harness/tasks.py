"""The kata's tasks, declared once: their letters, the function each is about, and the words a
task's verdict is told in. The grader, the scorecard, the CLI's board and the loader all read them
from here.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CORE",
    "FUNCTIONS",
    "LETTERS",
    "REQUIRED",
    "STRETCH",
    "TASKS",
    "WRITTEN",
    "Task",
    "TaskStatus",
    "is_not_started",
    "not_defined",
    "not_started",
    "settled",
    "task_status",
    "title",
]


@dataclass(frozen=True)
class Task:
    letter: str
    #: The function of ``candidate/solution.py`` the task grades; None for the end-to-end run,
    #: which grades ``claim_next_job`` and ``process_job`` together.
    function: str | None
    #: An optional task for those who finish early: shown as stretch, never needed for "every
    #: task passes", and a solution that leaves it out (or leaves the stub) is not failing it.
    stretch: bool = False

    @property
    def title(self) -> str:
        """What the scorecard and the board call it: its function, or "end to end"."""
        return self.function or "end to end"


TASKS: tuple[Task, ...] = (
    Task("A", "claim_next_job"),
    Task("B", "create_campaign_jobs"),
    Task("C", "send_email_step"),
    Task("D", "process_job"),
    Task("E", None),
    Task("F", "recover_stalled_jobs", stretch=True),
    Task("G", "reserve_send_slot", stretch=True),
)
#: Every task's letter, in order.
LETTERS = "".join(task.letter for task in TASKS)
#: The tasks "every task passes" is about (A to E).
CORE = "".join(task.letter for task in TASKS if not task.stretch)
#: The optional tasks (F, G).
STRETCH = "".join(task.letter for task in TASKS if task.stretch)
#: The tasks the candidate writes a function for (they have hints and a reference section).
WRITTEN = "".join(task.letter for task in TASKS if task.function)
#: Letter -> the function the task is about, for the tasks the candidate writes, in the
#: contract's order.
FUNCTIONS: dict[str, str] = {task.letter: task.function for task in TASKS if task.function}
#: The functions every solution file must define (the stretch tasks' are optional).
REQUIRED: tuple[str, ...] = tuple(
    task.function for task in TASKS if task.function and not task.stretch
)


def title(letter: str) -> str:
    """The task's name on screen ("claim_next_job", "end to end"), or the letter itself."""
    return next((task.title for task in TASKS if task.letter == letter), letter)


class TaskStatus(StrEnum):
    """A task's verdict, as the scorecard, ``harness grade`` and the board say it."""

    NOT_GRADED = "not graded"
    NOT_STARTED = "not started"
    FAILING = "failing"
    PASSING = "passing"
    #: The board's: passing on the main backend and on the other one.
    PASSING_ON_BOTH = "passing on both backends"
    NO_TESTS = "no tests"


def not_started(function: str) -> str:
    """The diagnosis of a function the candidate has not written yet."""
    return f"{TaskStatus.NOT_STARTED}: {function}() still raises NotImplementedError"


def not_defined(function: str) -> str:
    """The diagnosis of an optional function the solution does not define."""
    return f"{TaskStatus.NOT_STARTED}: the solution defines no {function}() (a stretch task)"


def is_not_started(diagnosis: str) -> bool:
    return diagnosis.startswith(TaskStatus.NOT_STARTED)


def task_status(passed: int, failed: int, diagnoses: Iterable[str]) -> TaskStatus:
    """One task's verdict from its tests: not started when every failure says so."""
    if failed == 0:
        return TaskStatus.PASSING if passed else TaskStatus.NO_TESTS
    diagnoses = list(diagnoses)
    if diagnoses and all(is_not_started(d) for d in diagnoses):
        return TaskStatus.NOT_STARTED
    return TaskStatus.FAILING


def settled(letter: str, status: TaskStatus | str) -> bool:
    """Whether ``letter``'s verdict lets the whole run pass: a task of A to E must pass; a
    stretch task must pass or not be started (a stretch task tried and failing fails the run)."""
    if status in (TaskStatus.PASSING, TaskStatus.PASSING_ON_BOTH):
        return True
    return letter in STRETCH and status in (
        TaskStatus.NOT_STARTED,
        TaskStatus.NOT_GRADED,
        TaskStatus.NO_TESTS,
    )
