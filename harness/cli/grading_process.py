"""One grading pass in a subprocess: ``pytest harness/grading --solution ... --kata-json ...``.

The candidate's code runs in the child, never in the CLI: a syntax error, an infinite loop, a
crashed event loop or an ``os._exit`` kills at most that child. The child streams its progress
(``pytest_events``), so that the board fills in task by task and a run in which no test finishes
is stopped early with "timed out after N s"; the run as a whole has an outer time limit too.
Cancelling the coroutine (a newer save made the run stale) kills the child's process group.

The child is a fresh ``python -m pytest``, or a fork of a warm process (``forkserver``) that has
already imported pytest and the harness, which is most of a small run's time.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol

from ..paths import PROJECT_ROOT
from ..sql.config import DatabaseConfig, default_database_url
from ..tasks import FUNCTIONS
from .results import GradeRun

__all__ = [
    "DEFAULT_TEST_TIMEOUT",
    "DEFAULT_TIMEOUT",
    "EVENTS_ENV",
    "FOCUS_ENV",
    "Child",
    "GradeRequest",
    "Spawner",
    "SubprocessSpawner",
    "grade_command",
    "kill_process",
    "run_grading",
    "stuck_at",
]

#: Seconds a whole run may take before it is killed, per tier.
DEFAULT_TIMEOUT = {"fast": 180.0, "full": 900.0}
#: Seconds without any test finishing before a run is killed, per tier. The graded tests have
#: their own limits (30-120 s); this one catches what they cannot, and answers sooner in the
#: fast tier, where no test should take more than a few seconds.
DEFAULT_TEST_TIMEOUT = {"fast": 20.0, "full": 150.0}
#: The event stream's environment variables (read by ``pytest_events``, which must not import
#: this module: it runs inside the grader).
EVENTS_ENV = "KATA_EVENTS"
FOCUS_ENV = "KATA_FOCUS"
_EVENTS_PLUGIN = "harness.cli.pytest_events"
_POLL = 0.05  # seconds between looks at the event stream while a run is going


@dataclass(frozen=True, kw_only=True)
class GradeRequest:
    """What to grade, where, and how long to wait."""

    solution: Path
    db_url: str | None = None  # None: the grader's default (DATABASE_URL or SQLite kata.db)
    tier: str = "full"
    tasks: str = ""  # only these tasks (e.g. "AB"); empty: all
    focus: str = ""  # grade these tasks' tests first
    shard: str = ""  # only this share of the tests, "I/N" (see shards.py); empty: all
    seed: int = 1
    timeout: float | None = None
    test_timeout: float | None = None

    def __post_init__(self) -> None:
        if self.tier not in DEFAULT_TIMEOUT:
            raise ValueError(f"tier must be fast or full, not {self.tier!r}")

    @property
    def url(self) -> str:
        return self.db_url or default_database_url()

    @property
    def backend(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return DatabaseConfig(url=self.url).dialect

    @property
    def limit(self) -> float:
        return self.timeout if self.timeout is not None else DEFAULT_TIMEOUT[self.tier]

    @property
    def test_limit(self) -> float:
        if self.test_timeout is not None:
            return self.test_timeout
        return DEFAULT_TEST_TIMEOUT[self.tier]


def grade_command(request: GradeRequest, json_path: Path) -> list[str]:
    """The pytest arguments (after ``python -m pytest``) of one grading pass."""
    command = [
        str(PROJECT_ROOT / "harness" / "grading"),
        "--solution",
        str(request.solution),
        "--kata-tier",
        request.tier,
        "--kata-seed",
        str(request.seed),
        "--kata-json",
        str(json_path),
        "-q",
        "--tb=no",
        "-p",
        "no:cacheprovider",
        "-p",
        _EVENTS_PLUGIN,
        # The faker and anyio plugins cost up to two seconds of imports and no graded
        # test uses them; faulthandler says where a test that never finishes is stuck.
        "-p",
        "no:faker",
        "-p",
        "no:anyio",
        "-o",
        f"faulthandler_timeout={_dump_after(request):g}",
        # A run forked from the warm server (forkserver) finds pytest plugins imported.
        "-W",
        "ignore::pytest.PytestAssertRewriteWarning",
    ]
    if request.db_url:
        command += ["--db", request.db_url]
    if request.tasks:
        command += ["--kata-task", request.tasks]
    if request.shard:
        command += ["--kata-shard", request.shard]
    return command


def _dump_after(request: GradeRequest) -> float:
    """Seconds after which a test's stacks are dumped: shortly before the run is stopped."""
    return max(1.0, request.test_limit - 1.5)


# --- children ------------------------------------------------------------------------------------


class Child(Protocol):
    """A running grading process."""

    pid: int

    async def wait(self) -> int:
        """Its exit status (negative: killed by that signal)."""
        ...


class Spawner(Protocol):
    async def spawn(self, args: list[str], env: dict[str, str], output: IO[bytes]) -> Child:
        """Start ``pytest args`` in a new session (its own process group) in the project root,
        with ``env``, stdin from /dev/null and stdout and stderr into ``output``."""
        ...


class _Subprocess:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.pid = process.pid

    async def wait(self) -> int:
        return await self.process.wait()


class SubprocessSpawner:
    """A fresh ``python -m pytest`` per run."""

    async def spawn(self, args: list[str], env: dict[str, str], output: IO[bytes]) -> Child:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "pytest",
            *args,
            cwd=PROJECT_ROOT,
            env=env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=output,
            stderr=asyncio.subprocess.STDOUT,
            start_new_session=True,
        )
        return _Subprocess(process)


def child_environment(request: GradeRequest, events_path: Path) -> dict[str, str]:
    env = {
        **os.environ,
        EVENTS_ENV: str(events_path),
        FOCUS_ENV: request.focus,
        "PYTHONUNBUFFERED": "1",
    }
    # Bytecode caching on: without it every run recompiles the harness and pytest's rewritten
    # test modules, a second of CPU per save. (The solution itself is never loaded from a
    # cached .pyc: see harness.worker.solutions.)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    if request.tier == "fast":
        env.setdefault("HYPOTHESIS_PROFILE", "fast")
    return env


def kill_process(pid: int) -> None:
    """Kill a child and everything it started (worker processes of the grader's tests): its
    process group, and the child itself in case it has not made its own group yet."""
    for kill in (os.killpg, os.kill):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            kill(pid, signal.SIGKILL)


def _kill(child: Child) -> None:
    kill_process(child.pid)


# --- a run ---------------------------------------------------------------------------------------


async def run_grading(
    request: GradeRequest,
    *,
    on_update: Callable[[GradeRun], None] | None = None,
    run: GradeRun | None = None,
    spawner: Spawner | None = None,
) -> GradeRun:
    """Grade in a subprocess and return the finished run; ``on_update`` sees it as it goes
    (pass ``run``, made from the same request, to hold it from the start)."""
    run = run or GradeRun(request)
    notify = on_update or (lambda run: None)
    # A fork of a run cancelled on its way may still write here while it is cleaned up.
    with tempfile.TemporaryDirectory(prefix="kata-grade-", ignore_cleanup_errors=True) as tmp:
        json_path = Path(tmp) / "results.json"
        events_path, output_path = Path(tmp) / "events.jsonl", Path(tmp) / "output.log"
        events_path.touch()
        # The grader's own temporary files (a SQLite database per test) go here too, so that a
        # run killed half-way leaves nothing behind once this directory is removed.
        scratch = Path(tmp) / "tmp"
        scratch.mkdir()
        environment = {**child_environment(request, events_path), "TMPDIR": str(scratch)}
        with output_path.open("wb") as output:
            child = await (spawner or SubprocessSpawner()).spawn(
                grade_command(request, json_path), environment, output
            )
        exited = asyncio.ensure_future(child.wait())
        try:
            with (
                events_path.open(encoding="utf-8") as events,
                output_path.open(encoding="utf-8", errors="replace") as output_log,
            ):
                await _follow(run, child, exited, _Tail(events), _Tail(output_log), notify)
        except asyncio.CancelledError:
            run.stop("cancelled")
            raise
        finally:
            if not exited.done():
                _kill(child)
            # Shielded: a cancelled run still reaps its child before it lets go.
            await asyncio.shield(exited)
        run.returncode = exited.result()
        if run.state == "running":
            _conclude(run, json_path)
    notify(run)
    return run


class _Tail:
    """The complete lines added to a file since the last look."""

    def __init__(self, stream: IO[str]) -> None:
        self.stream = stream
        self.partial = ""

    def lines(self) -> list[str]:
        chunk = self.stream.read()
        if not chunk:
            return []
        *lines, self.partial = (self.partial + chunk).split("\n")
        return lines


async def _follow(
    run: GradeRun,
    child: Child,
    exited: asyncio.Future[int],
    events: _Tail,
    output: _Tail,
    notify: Callable[[GradeRun], None],
) -> None:
    last_progress = time.monotonic()
    while True:
        await asyncio.wait({exited}, timeout=_POLL)
        run.raw.extend(output.lines())
        lines = events.lines()
        before = _progress(run)
        for line in lines:
            if line.strip():
                with contextlib.suppress(ValueError, KeyError, TypeError, AttributeError):
                    run.apply(json.loads(line))
        # Progress is a test started or finished; any other line (a heartbeat) proves nothing.
        if _progress(run) != before:
            last_progress = time.monotonic()
        if lines:
            notify(run)
        if exited.done():
            run.raw.extend(output.lines())
            return
        now = time.monotonic()
        request = run.request
        if now - run.started > request.limit:
            _kill(child)
            run.stop(
                "timed out",
                f"timed out after {request.limit:g} s: the whole {run.tier} "
                "tier did not finish within its time limit",
            )
            return
        if now - last_progress > request.test_limit:
            await asyncio.sleep(_POLL)  # the stack dump is due about now: give it a moment
            run.raw.extend(output.lines())
            _kill(child)
            run.stop("timed out", _stalled(run, request.test_limit))
            return


def _progress(run: GradeRun) -> tuple[int, int, str | None]:
    return len(run.tests), len(run.results), run.current


def _stalled(run: GradeRun, seconds: float) -> str:
    if not run.tests:
        return (
            f"timed out after {seconds:g} s before the first test started: is "
            f"{run.request.solution.name} stuck at import time (a loop or a blocking call "
            "at module level)?"
        )
    current = run.current or "the next test"
    task = run.tests.get(current, "")
    suspect = f"{FUNCTIONS[task]}()" if task in FUNCTIONS else "your code"
    where = stuck_at(run.raw, run.request.solution)
    return (
        f"timed out after {seconds:g} s in {current.rsplit('::', 1)[-1]}: {suspect} looks "
        "stuck (an infinite loop, a blocking call, a lock that is never released)"
        + (f" — it was at {where}" if where else "")
    )


_FRAME_LINE = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+) in (?P<function>\S+)')


def stuck_at(output: Iterable[str], solution: Path) -> str | None:
    """Where the solution was when faulthandler dumped the stacks (most recent call first):
    "solution.py:12 in claim_next_job()", or None."""
    lines = list(output)
    starts = [i for i, line in enumerate(lines) if line.startswith("Timeout (")]
    for line in lines[starts[-1] if starts else 0 :]:
        match = _FRAME_LINE.search(line)
        if match and Path(match["file"]).resolve() == solution.resolve():
            return f"{solution.name}:{match['line']} in {match['function']}()"
    return None


def _conclude(run: GradeRun, json_path: Path) -> None:
    """The child exited by itself: done, or crashed if it did not finish its report."""
    code = run.returncode
    if json_path.exists():
        with contextlib.suppress(ValueError):
            run.absorb_scorecard(json.loads(json_path.read_text()))
    if run.scorecard is not None and code in (0, 1):
        run.stop("done")
        return
    if code is not None and code < 0:
        how = f"was killed by {signal.Signals(-code).name}"
    else:
        how = f"exited with status {code} without a report"
    where = f" during {run.current.rsplit('::', 1)[-1]}" if run.current else ""
    tail = " · ".join(line.strip() for line in list(run.raw)[-3:] if line.strip())
    run.stop("crashed", f"the grading process {how}{where}" + (f": {tail}" if tail else ""))
