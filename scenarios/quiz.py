"""The question at the end of a drill: a multiple-choice diagnosis, then "what would you change?".

A ``Question`` has four or five ``Choice``s and one right letter. ``grade`` checks an answer;
the free-text change is kept with the grade and appended to an answers file (JSON lines), so
that a candidate (or an interviewer) can look back at what was said during each drill.
``review_change`` reads the change against the question's rubric: the points a good answer
makes (and the tempting ones it should not), matched by keywords - a nudge, not a grade.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from harness.paths import kata_home

__all__ = [
    "FOLLOW_UP",
    "Choice",
    "Grade",
    "Point",
    "Question",
    "answers_file",
    "grade_answer",
    "record",
    "review_change",
]

FOLLOW_UP = "What would you change?"


def answers_file() -> Path:
    """Where answers are recorded unless told otherwise: ``scenario-answers.jsonl`` in
    ``.kata/`` (or ``KATA_HOME``)."""

    return kata_home() / "scenario-answers.jsonl"


@dataclass(frozen=True)
class Point:
    """One thing a good "what would you change?" says (or, with ``warns``, should not)."""

    label: str
    pattern: str  # a regular expression, matched case-insensitively
    warns: bool = False

    def made_in(self, text: str) -> bool:
        return re.search(self.pattern, text, re.IGNORECASE) is not None


@dataclass(frozen=True)
class Choice:
    letter: str
    text: str


@dataclass(frozen=True)
class Question:
    prompt: str
    choices: tuple[Choice, ...]
    right: str
    rubric: tuple[Point, ...] = ()

    def __post_init__(self) -> None:
        letters = [choice.letter for choice in self.choices]
        if not 4 <= len(letters) <= 5 or len(set(letters)) != len(letters):
            raise ValueError(f"a question needs 4 or 5 distinct choices, got {letters}")
        if self.right not in letters:
            raise ValueError(f"the right answer {self.right!r} is not one of {letters}")

    @property
    def letters(self) -> list[str]:
        return [choice.letter for choice in self.choices]

    def choice(self, letter: str) -> Choice:
        for choice in self.choices:
            if choice.letter == letter.strip().upper():
                return choice
        raise ValueError(f"{letter!r} is not one of {', '.join(self.letters)}")

    def as_dict(self) -> dict[str, object]:
        return {
            "prompt": self.prompt,
            "choices": {choice.letter: choice.text for choice in self.choices},
            "follow_up": FOLLOW_UP,
        }


@dataclass(frozen=True)
class Grade:
    given: str
    right: str
    correct: bool
    change: str

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


def grade_answer(question: Question, answer: str, change: str = "") -> Grade:
    """Grade ``answer`` (a letter, any case); ``ValueError`` when it is not one of the choices."""
    given = question.choice(answer).letter
    return Grade(given=given, right=question.right, correct=given == question.right, change=change)


def review_change(question: Question, change: str) -> list[tuple[Point, bool]]:
    """Each rubric point and whether ``change`` makes it (for a warning: falls for it)."""
    return [(point, point.made_in(change)) for point in question.rubric]


def record(
    path: Path,
    *,
    scenario: int,
    result: Grade,
    figures: dict[str, object],
    run: str | None = None,
) -> None:
    """Append one answered drill to ``path`` (created if needed); ``run`` is the recorded run's
    id the answer is about."""
    path.parent.mkdir(parents=True, exist_ok=True)
    entry = {
        "at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "scenario": scenario,
        "run": run,
        **result.as_dict(),
        "figures": figures,
    }
    with path.open("a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")
