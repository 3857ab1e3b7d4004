"""The supervised child's report to its parent: one JSON line per event, on a pipe.

The solution runs in the process that writes this report, so the report is kept where a name
does not lead to it: the pipe is moved to a file descriptor of a random number, which is kept in
the closure of the one function that writes to it (``emit``), itself kept in the pytest config's
stash and in a plugin object registered for the child only; no module global holds either. The
line is encoded with ``json.dumps`` and written with ``os.write`` as they were when the harness
was imported, so a solution that rebinds them later does not change what is written.

That raises the cost of forging a report; it does not make it impossible (the solution can look
for pipes among its process's file descriptors, or walk up the stack to the config). What the
parent does not take on the child's word is listed in ``supervisor.py``, what remains in
``fixtures/solutions/hostile/README.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from . import tamper

__all__ = ["Emit", "attach", "open_channel", "phase_output", "report_of"]

Emit = Callable[..., None]

# Taken at import, before any solution is loaded (see the module docstring).
_dumps = json.dumps
_write = os.write
_getpid = os.getpid

_REPORT = pytest.StashKey[Emit]()


def open_channel(fd: int) -> Emit:
    """The function that reports an event on the pipe ``fd`` (moved to a random number)."""
    with contextlib.suppress(OSError, ValueError, ImportError):
        import fcntl
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
        high = min(soft if soft != resource.RLIM_INFINITY else 4096, 4096)
        if high > 64:
            moved = fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, random.randrange(32, high - 16))
            os.close(fd)
            fd = moved

    def emit(event: str, **fields: Any) -> None:
        data = (_dumps({"event": event, "pid": _getpid(), **fields}) + "\n").encode()
        with contextlib.suppress(OSError):  # the parent is gone: nobody to tell
            while data:
                data = data[_write(fd, data) :]

    return emit


def attach(config: pytest.Config, emit: Emit) -> None:
    """Make ``config``'s session report to the parent through ``emit`` (in the child only)."""
    config.stash[_REPORT] = emit
    config.pluginmanager.register(_ChildHooks(emit), "kata-child-report")


def report_of(config: pytest.Config) -> Emit | None:
    """How this session reports to its parent, when it is a supervised grading child."""
    return config.stash.get(_REPORT, None)


#: Lines of a test's captured output reported for the watch mode's board (it shows far fewer).
_OUTPUT_LINES = 200


def phase_output(report: pytest.TestReport) -> str:
    """What the test printed in this phase (a report's sections accumulate over the phases),
    its last ``_OUTPUT_LINES`` lines."""
    text = "".join(
        content
        for name, content in report.sections
        if name in (f"Captured stdout {report.when}", f"Captured stderr {report.when}")
    ).rstrip("\n")
    return "\n".join(text.splitlines()[-_OUTPUT_LINES:]) if text else ""


class _ChildHooks:
    """The hooks that report what has no config at hand: each test's start, the solution's
    output, an interruption, the end of the session."""

    def __init__(self, emit: Emit) -> None:
        self._emit = emit

    def pytest_runtest_logstart(self, nodeid: str) -> None:
        self._emit("start", id=nodeid)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        text = phase_output(report)
        if text:
            self._emit("output", id=report.nodeid, text=text)

    def pytest_keyboard_interrupt(self, excinfo: pytest.ExceptionInfo[BaseException]) -> None:
        if not isinstance(excinfo.value, pytest.Session.Interrupted):
            self._emit("interrupted", what=_interruption(excinfo.value))

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session, exitstatus: int) -> None:
        if session.shouldfail:  # -x or --maxfail: the candidate asked for it
            self._emit("stopped", message=f"pytest was told to stop early ({session.shouldfail})")
        self._emit("complete", exitstatus=int(exitstatus))


def _interruption(error: BaseException) -> str:
    """How the run was stopped, in the candidate's terms: "KeyboardInterrupt raised in
    create_campaign_jobs() at solution.py:12", "pytest.exit() at ...", "a SIGINT"."""
    name = "pytest.exit()" if isinstance(error, pytest.exit.Exception) else type(error).__name__
    if isinstance(error, KeyboardInterrupt) and not tamper.raised_by_solution(error):
        name = "a SIGINT (Ctrl-C) signal"
    frames = [
        f for f in traceback.extract_tb(error.__traceback__) if tamper.is_candidate_file(f.filename)
    ]
    if not frames:
        return name
    frame = frames[-1]
    return f"{name} raised in {frame.name}() at {Path(frame.filename).name}:{frame.lineno}"
