"""A pytest plugin that streams a grading run's progress, for the CLI's board.

Loaded with ``-p harness.cli.pytest_events`` next to the grading plugin. It writes one JSON
object per line to the file named by ``KATA_EVENTS`` (and does nothing without it):

    {"event": "collected", "tests": [{"id": ..., "task": "A", "rank": [...]}, ...]}
    {"event": "start", "id": ...}
    {"event": "result", "id": ..., "task": "A", "outcome": "pass"|"fail",
     "diagnosis": ..., "duration": ..., "advice": [...], "timeline": [...]}
    {"event": "output", "id": ..., "text": ...}        # what the solution printed

A supervised grading run (``harness.grading.supervisor``, wherever ``fork`` exists) writes the
same stream from its parent process instead, from what it accepted of the child's report: the
child, where the solution runs, is not given the stream's name, and this module then writes
nothing. It writes the stream itself only where the run is not supervised.

so that the board can show each task as soon as its tests are done, say which test is running,
and stop a run in which no test finishes (an infinite loop) without waiting for the end.
``KATA_FOCUS`` (task letters) moves those tasks' tests to the front: watch mode grades the task
the candidate just edited first.
"""

from __future__ import annotations

import json
import os
from typing import Any, TextIO

import pytest

from ..grading.channel import phase_output
from ..grading.precedence import rank
from ..grading.verdicts import status_of

__all__ = ["EVENTS_ENV", "FOCUS_ENV"]

# The same names as in grading_process.py, which this module must not import: it runs inside
# the grader, where importing the CLI would be slow and, in a fork of a process that has
# imported it, would keep pytest from loading this module as a plugin.
EVENTS_ENV = "KATA_EVENTS"
FOCUS_ENV = "KATA_FOCUS"
_DIAGNOSIS_CHARS = 2000  # a graded test's diagnosis is one sentence; a traceback is cut

_stream: TextIO | None = None
_tasks: dict[str, str] = {}
_ranks: dict[str, list[Any]] = {}


def _emit(event: dict[str, Any]) -> None:
    global _stream
    path = os.environ.get(EVENTS_ENV)
    if not path:
        return
    if _stream is None:
        _stream = open(path, "a", encoding="utf-8")  # noqa: SIM115 - open for the whole run
    _stream.write(json.dumps(event) + "\n")
    _stream.flush()


def _task(item: pytest.Item) -> str | None:
    marker = item.get_closest_marker("task")
    return str(marker.args[0]) if marker else None


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    focus = os.environ.get(FOCUS_ENV, "").upper()
    if focus:
        items.sort(key=lambda item: 0 if (_task(item) or "?") in focus else 1)


def pytest_collection_finish(session: pytest.Session) -> None:
    _tasks.update({item.nodeid: _task(item) or "" for item in session.items})
    _ranks.update({item.nodeid: rank(item, _tasks[item.nodeid]) for item in session.items})
    _emit(
        {
            "event": "collected",
            "tests": [
                {"id": item.nodeid, "task": _tasks[item.nodeid], "rank": _ranks[item.nodeid]}
                for item in session.items
            ],
        }
    )


def pytest_runtest_logstart(nodeid: str) -> None:
    _emit({"event": "start", "id": nodeid})


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    text = phase_output(report)
    if text:
        _emit({"event": "output", "id": report.nodeid, "text": text})
    if report.when == "call" or (report.when == "setup" and not report.passed):
        # The grading plugin has made a skip of a graded test a failure (see verdicts).
        outcome = status_of(report.passed)
        diagnosis = str(report.longrepr)[:_DIAGNOSIS_CHARS] if report.failed else None
        if diagnosis:  # a race's timeline comes apart (the board shows it on a key)
            diagnosis = diagnosis.split("\nwhat happened:", 1)[0]
        timeline = next((v for k, v in report.user_properties if k == "timeline"), [])
        # Advice (not a failure) as the grader's tests leave it for the scorecard.
        advice = [value for key, value in report.user_properties if key == "advice"]
        _emit(
            {
                "event": "result",
                "id": report.nodeid,
                "task": _tasks.get(report.nodeid, ""),
                "outcome": outcome,
                "diagnosis": diagnosis,
                "duration": round(report.duration, 3),
                "advice": advice,
                "timeline": timeline,
                "rank": _ranks.get(report.nodeid, []),
            }
        )


def pytest_unconfigure() -> None:
    global _stream
    if _stream is not None:
        _stream.close()
        _stream = None
