"""Each incident's multiple-choice diagnosis, as the drill asks it: ``question_for(n, dialect)``
is the question after incident ``n`` in the words of the backend that ran (SQLite has a write
lock where PostgreSQL has row locks); ``QUESTIONS[n]`` is PostgreSQL's wording, and the letters
and the right one are the same on both. Each question is declared with its drill's diagnosis
(``diagnoses/<slug>.py``)."""

from __future__ import annotations

from .catalog import DIAGNOSES, diagnosis_of
from .quiz import Question

__all__ = ["QUESTIONS", "question_for"]

QUESTIONS: dict[int, Question] = {number: d.question for number, d in DIAGNOSES.items()}


def question_for(number: int, dialect: str) -> Question:
    """Incident ``number``'s question in the words of ``dialect``."""
    return diagnosis_of(number).question_for(dialect)
