"""The watch mode's event stream (``KATA_EVENTS``), as the supervising parent writes it."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable
from typing import Any, Protocol

from .scorecard import Outcome

__all__ = ["EventStream"]


class _Collected(Protocol):
    id: str
    task: str
    rank: list[Any]


#: Characters of a diagnosis in the event stream (a graded test's diagnosis is one sentence).
_DIAGNOSIS_CHARS = 2000


class EventStream:
    """The watch mode's event stream (``KATA_EVENTS``, read by ``python -m harness grade`` and
    ``dev``), written here from what the parent accepted of the child's report: the same
    results as the scorecard's, and nothing the child writes past the parent's checks.
    The format is ``harness.cli.pytest_events``'s."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _write(self, event: dict[str, Any]) -> None:
        with contextlib.suppress(OSError), open(self.path, "a", encoding="utf-8") as events:
            events.write(json.dumps(event) + "\n")

    def collected(self, tests: Iterable[_Collected]) -> None:
        self._write(
            {
                "event": "collected",
                "tests": [{"id": t.id, "task": t.task, "rank": t.rank} for t in tests],
            }
        )

    def start(self, test_id: str) -> None:
        self._write({"event": "start", "id": test_id})

    def output(self, test_id: str, text: str) -> None:
        self._write({"event": "output", "id": test_id, "text": text})

    def result(self, outcome: Outcome) -> None:
        self._write(
            {
                "event": "result",
                "id": outcome.id,
                "task": outcome.task,
                "outcome": outcome.status,
                "diagnosis": (outcome.message or "")[:_DIAGNOSIS_CHARS] or None,
                "duration": outcome.duration,
                "advice": outcome.advice,
                "timeline": outcome.told(),
                "rank": outcome.rank,
            }
        )
