"""No pass without a report: the graded tests run in a child process, the verdict is given here.

A solution runs inside the process that grades it, so it can end that process (``os._exit(0)``
exits 0 with nothing printed), interrupt it (``KeyboardInterrupt``), or hang it. So a grading
``pytest`` forks: the child runs the session as usual and reports to the parent through a pipe,
one JSON line per event (the tests collected, the solution loaded, each test's start and
result, and a last line once the session is complete). The parent never loads the solution; it
passes only when the child exited by itself, its report is complete and every collected graded
test has a result. Otherwise it says what happened in the candidate's terms ("the solution
ended the grading process with os._exit(0) ... during test_x of Task B"), fails the test that
was running and every test that never ran, and exits non-zero. The scorecard and ``--kata-json``
are written here, from the child's results, so that they always agree with that verdict; so is
the watch mode's event stream (``KATA_EVENTS``, whose name the child is not given), from the
same results (``EventStream``).

The parent also keeps time, on its own clock: a test still running its limit plus ``_MARGIN``
after its start event, an import, a gap between tests or an exit that takes too long, or a run
longer than its ceiling (the import's limit, each collected test's limit plus the margin, the
exit: ``run_ceiling``) gets the child killed, whatever the child writes meanwhile, and so does
whatever the child left behind (on Linux the parent is a "child subreaper": orphans of the
child become its children). A fork, not a fresh interpreter:
the child has everything already imported, so the extra process costs milliseconds.
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from ..paths import PROJECT_ROOT
from . import channel, tamper
from .confinement import become_subreaper, die_with, kill_leftovers, limit_output
from .event_stream import EventStream
from .scorecard import Outcome, Scorecard

__all__ = ["ChildRun", "supervise", "wants_supervision"]

#: Seconds the parent waits, beyond a test's own limit, before it calls the child unresponsive:
#: the alarm fires 10 s after the limit, then the test's teardown needs a few seconds.
_MARGIN = 40.0
_BETWEEN_TESTS = 90.0  # teardown of one test and setup of the next
_LOADING = 60.0  # the import has its own 30 s alarm
_COLLECTING = 600.0  # no candidate code runs before the tests are collected
_EXITING = 30.0  # after the last line of the report
_EVENTS_ENV = "KATA_EVENTS"  # the watch mode's event stream (see harness.cli.pytest_events)
_GRADING_DIR = PROJECT_ROOT / "harness" / "grading"


# --- the child's side ----------------------------------------------------------------------------

#: Whether this process is a supervised grading child (which never supervises again).
_in_child = False


def wants_supervision(config: pytest.Config) -> bool:
    """A grading run (tests under harness/grading selected) that runs tests, where fork exists."""
    if _in_child or not hasattr(os, "fork"):
        return False
    option = config.option
    for flag in (
        "help",
        "version",
        "collectonly",
        "showfixtures",
        "show_fixtures_per_test",
        "markers",
        "setupplan",
        "setuponly",
    ):
        if getattr(option, flag, False):
            return False
    here = config.invocation_params.dir
    for arg in config.args:
        path = Path(arg.split("::")[0])
        path = (path if path.is_absolute() else here / path).resolve()
        if path == _GRADING_DIR or _GRADING_DIR in path.parents:
            return True
    return False


def supervise(config: pytest.Config, scorecard: Scorecard, json_path: str | None) -> int | None:
    """Run the session in a child and give the verdict. Returns the exit status in the parent;
    in the child, returns None (the session then runs as usual) and never comes back here."""
    global _in_child
    read_fd, write_fd = os.pipe()
    become_subreaper()
    sys.stdout.flush()
    sys.stderr.flush()
    parent = os.getpid()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        _in_child = True
        # The parent writes the watch mode's event stream (see EventStream): not the solution's.
        os.environ.pop(_EVENTS_ENV, None)
        channel.attach(config, channel.open_channel(write_fd))
        _run_child(config, parent)  # never returns
    os.close(write_fd)
    # A debugger session in the child may sit at its prompt for as long as it likes.
    run = ChildRun(pid, patient=bool(config.option.usepdb or getattr(config.option, "trace", 0)))
    events = os.environ.get(_EVENTS_ENV)
    run.stream = EventStream(events) if events else None
    try:
        _follow(run, read_fd)
    finally:
        os.close(read_fd)
        kill_leftovers()
    return _conclude(run, scorecard, json_path)


def _run_child(config: pytest.Config, parent: int) -> None:
    code: int = pytest.ExitCode.INTERNAL_ERROR
    try:
        die_with(parent)
        limit_output()
        tamper.watch_sigint()
        code = int(config.hook.pytest_cmdline_main(config=config))
    except BaseException:  # the session's own errors are reported by pytest; this is the rest
        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        # At once: no atexit handler, no wait for threads the solution may have left running.
        tamper.exit_now(code)


# --- the parent's side ---------------------------------------------------------------------------


@dataclass
class _Test:
    id: str
    name: str
    task: str
    timeout: float
    rank: list[Any] = field(default_factory=list)


def run_ceiling(tests: list[_Test]) -> float:
    """Seconds a whole run may take once its tests are collected: the import's limit, each
    test's limit plus the margin, and the exit."""
    return _LOADING + sum(test.timeout + _MARGIN for test in tests) + _EXITING


@dataclass
class ChildRun:
    """What the parent knows of its child: its report so far, and how it ended.

    The child's report is taken as evidence of what happened, never as a say over time: every
    deadline is kept on the parent's own clock, from when the phase began (a test from its start
    event), and no line the child writes moves it. A line whose process id is not the child's
    is not its report; after the child's last line ("complete") nothing more is read; a test is
    started once, and only the test that is running (or has just finished, until the next one
    starts) can get a result, the last one reported winning; only collected tests count."""

    pid: int
    collected: dict[str, _Test] = field(default_factory=dict)
    results: dict[str, Outcome] = field(default_factory=dict)
    current: str | None = None
    last: str | None = None  # the last test that finished
    loading: str | None = None  # the solution's file name while it is being imported
    exit_call: dict[str, Any] | None = None
    tampered: str | None = None
    stopped: str | None = None  # why the child stopped its session early
    interrupted: dict[str, Any] | None = None
    complete: int | None = None  # the child's own exit status, once its report is complete
    status: int | None = None  # how the process ended (negative: killed by that signal)
    killed: str | None = None  # why the parent killed it
    user_interrupt: bool = False
    patient: bool = False  # never called unresponsive
    stream: EventStream | None = None  # the watch mode's event stream, written from here
    began: float = field(default_factory=time.monotonic)
    phase_began: float = field(default_factory=time.monotonic)
    started: dict[str, float] = field(default_factory=dict)  # test id -> when it started
    ceiling: float | None = None  # when the whole run is overdue, once collected
    imported: bool = False  # the solution's import has begun (it is reported once)

    def apply(self, event: dict[str, Any], now: float | None = None) -> None:
        if event.get("pid") != self.pid or self.complete is not None:
            return  # a fork of the child (the guard refuses those), or after the last line
        now = time.monotonic() if now is None else now
        kind = event.get("event")
        if kind == "collected" and not self.collected and self.ceiling is None:
            tests = [_Test(**t) for t in event["tests"]]
            self.collected = {t.id: t for t in tests}
            self.ceiling = now + run_ceiling(tests)
            self.phase_began = now
            if self.stream:
                self.stream.collected(tests)
        elif kind == "loading" and not self.imported:
            self.imported = True
            self.loading = str(event["solution"])
            self.phase_began = now
        elif kind == "loaded" and self.loading:
            self.loading = None
            self.phase_began = now
        elif kind == "start":
            test_id = event["id"]
            if test_id in self.collected and test_id not in self.started:
                self.current, self.last = test_id, None
                self.started[test_id] = self.phase_began = now
                if self.stream:
                    self.stream.start(test_id)
        elif kind == "result":
            test_id = event["id"]
            if test_id == self.current or (self.current is None and test_id == self.last):
                outcome = Outcome(**{**event["outcome"], "id": test_id})
                self.results[test_id] = outcome
                if self.current is not None:
                    self.phase_began = now
                self.current, self.last = None, test_id
                if self.stream:
                    self.stream.result(outcome)
        elif kind == "output":
            if event.get("id") in self.collected and self.stream:
                self.stream.output(str(event["id"]), str(event.get("text", "")))
        elif kind == "exit":
            self.exit_call = event
        elif kind == "tampered":
            self.tampered = self.tampered or event["message"]
        elif kind == "stopped":
            self.stopped = self.stopped or event["message"]
        elif kind == "interrupted":
            self.interrupted = event
        elif kind == "complete":
            self.complete = int(event["exitstatus"])
            self.phase_began = now

    def overdue(self, now: float) -> str | None:
        """Why the child must be killed now (None: it still has time)."""
        if self.patient:
            return None
        if self.complete is not None:
            if now - self.phase_began > _EXITING:
                return f"the grading process did not exit {_EXITING:g} s after its report ended"
            return None
        if self.current in self.collected:
            test = self.collected[self.current]
            running = now - self.started[test.id]
            if running > test.timeout + _MARGIN:
                return (
                    f"{test.name} of Task {test.task} ran past its time limit: still running "
                    f"{running:.0f} s after it started (limit {test.timeout:g} s, plus "
                    f"{_MARGIN:g} s for the grader's alarm and cleanup), so the grading process "
                    "was killed — something kept the limit from stopping the solution (a "
                    "blocking call, a thread, or the alarm switched off)"
                )
        elif self.loading:
            if now - self.phase_began > _LOADING:
                return (
                    f"the grading process stopped responding while {self.loading} was being "
                    f"imported: still importing after {_LOADING:g} s, so it was killed"
                )
        else:
            allowance = _BETWEEN_TESTS if self.collected else _COLLECTING
            if now - self.phase_began > allowance:
                return (
                    f"the grading process stopped responding{self.during()}: no test started "
                    f"for {allowance:g} s, so it was killed (a blocking call or a thread the "
                    "time limit could not interrupt?)"
                )
        if self.ceiling is not None and now > self.ceiling:
            whole = run_ceiling(list(self.collected.values()))
            return (
                f"the grading ran past the time limit of the whole run{self.during()}: "
                f"{whole:.0f} s (the import's {_LOADING:g} s, each test's limit plus "
                f"{_MARGIN:g} s, and {_EXITING:g} s to exit), so it was killed"
            )
        return None

    def during(self) -> str:
        if self.current in self.collected:
            test = self.collected[self.current]
            return f" during {test.name} of Task {test.task}"
        if self.loading:
            return f" while {self.loading} was being imported"
        if self.last in self.collected:
            return f" after {self.collected[self.last].name}"
        return " before the first test"

    def problem(self) -> str | None:
        """Why the child's report cannot be taken as the verdict (None: it can)."""
        if self.tampered:
            return self.tampered
        during = self.during()
        if self.killed is not None:
            return self.killed
        if self.complete is None:
            if self.exit_call is not None:
                code = self.exit_call["status"]
                return (
                    f"the solution ended the grading process with os._exit({code}) at "
                    f"{self.exit_call['where']} (exit status {code}, no report){during}"
                )
            status = self.status
            if status is not None and status < 0:
                name = _signal_name(-status)
                why = (
                    " (the solution wrote more than the output limit)" if name == "SIGXFSZ" else ""
                )
                return f"the grading process was killed by {name}{why}{during}"
            return (
                f"the grading process ended with exit status {status} before its report was "
                f"complete (os._exit or a crash in the solution?){during}"
            )
        if self.user_interrupt:
            return f"grading was interrupted (Ctrl-C){during}"
        if self.stopped is not None:
            return self.stopped
        if self.interrupted is not None:
            return f"the solution interrupted the grading: {self.interrupted['what']}{during}"
        missing = [t for t in self.collected if t not in self.results]
        if missing:
            return f"the grading process stopped early (pytest exit status {self.complete}){during}"
        if self.status not in (0, 1, 5) and self.status != self.complete:
            return f"the grading process ended with exit status {self.status} after its report"
        return None


def _signal_name(number: int) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def _follow(run: ChildRun, fd: int) -> None:
    """Read the child's report until it exits; kill it when it runs out of time."""

    def interrupted(signum: int, frame: Any) -> None:
        run.user_interrupt = True
        interrupted_at.append(time.monotonic())

    interrupted_at: list[float] = []
    previous = signal.signal(signal.SIGINT, interrupted)
    partial = b""
    reading = True
    forwarded = False
    try:
        while True:
            if reading:
                ready, _, _ = select.select([fd], [], [], 0.2)
                if ready:
                    chunk = os.read(fd, 1 << 16)
                    if not chunk:
                        reading = False
                    *lines, partial = (partial + chunk).split(b"\n")
                    _apply(run, lines)
            else:
                time.sleep(0.01)
            done, status = os.waitpid(run.pid, os.WNOHANG)
            if done:
                run.status = os.waitstatus_to_exitcode(status)
                _drain(run, fd, partial)
                return
            now = time.monotonic()
            if interrupted_at and not forwarded and now - interrupted_at[0] > 2:
                # The terminal's Ctrl-C reaches the child too; a SIGINT sent to us alone is
                # passed on, and a child that ignores it is killed.
                forwarded = True
                with contextlib.suppress(OSError):
                    os.kill(run.pid, signal.SIGINT)
            overdue = run.overdue(now)
            if overdue is None and interrupted_at and now - interrupted_at[0] > 15:
                overdue = f"grading was interrupted (Ctrl-C){run.during()}"
            if overdue is not None:
                # What the child reported up to now still counts; nothing it writes after.
                _apply(run, partial.split(b"\n")[:-1])
                run.killed = overdue
                with contextlib.suppress(OSError):
                    os.kill(run.pid, signal.SIGKILL)
                _, status = os.waitpid(run.pid, 0)
                run.status = os.waitstatus_to_exitcode(status)
                return
    finally:
        signal.signal(signal.SIGINT, previous)


def _apply(run: ChildRun, lines: list[bytes]) -> None:
    for line in lines:
        with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
            run.apply(json.loads(line))


def _drain(run: ChildRun, fd: int, partial: bytes) -> None:
    """The lines still in the pipe (a descendant may hold it open: never wait for its end)."""
    os.set_blocking(fd, False)
    with contextlib.suppress(OSError):
        while chunk := os.read(fd, 1 << 16):
            partial += chunk
    _apply(run, partial.split(b"\n"))


def _conclude(run: ChildRun, scorecard: Scorecard, json_path: str | None) -> int:
    problem = run.problem()
    added: list[Outcome] = []
    for test in run.collected.values():
        outcome = run.results.get(test.id)
        if run.tampered:
            duration = outcome.duration if outcome else 0.0
            outcome = Outcome(
                test.name, test.task, "fail", run.tampered, duration, id=test.id, rank=test.rank
            )
            added.append(outcome)
        elif outcome is None:
            message = problem or "no result was reported"
            if test.id != run.current:
                message = f"not run: {message}"
            outcome = Outcome(
                test.name, test.task, "fail", message, 0.0, id=test.id, rank=test.rank
            )
            added.append(outcome)
        scorecard.add(outcome)
    if run.stream:
        for outcome in added:
            run.stream.result(outcome)
    if problem:
        _print_problem(problem)
    if scorecard.outcomes:
        from rich.console import Console

        print()
        scorecard.print(Console())
        if json_path:
            scorecard.write_json(Path(json_path))
    if problem:
        return pytest.ExitCode.INTERRUPTED if run.user_interrupt else pytest.ExitCode.TESTS_FAILED
    code = run.complete if run.complete is not None else pytest.ExitCode.INTERNAL_ERROR
    if scorecard.outcomes and scorecard.status != "pass" and code == pytest.ExitCode.OK:
        return pytest.ExitCode.TESTS_FAILED
    if scorecard.outcomes and scorecard.status == "pass" and code == pytest.ExitCode.TESTS_FAILED:
        # Only stretch tasks nobody started failed (their stubs raise): the run passes.
        return pytest.ExitCode.OK
    return int(code)


def _print_problem(problem: str) -> None:
    from rich.console import Console
    from rich.text import Text

    Console(stderr=False).print(Text(f"\n✘ {problem}", style="bold red"))
