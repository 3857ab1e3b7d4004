"""The grading plugin (loaded by the root conftest.py): ``pytest`` grades ``candidate/solution.py``.

Options: ``--solution PATH`` grades another file; ``--db URL`` (or ``DATABASE_URL``) picks the
backend; ``--kata-seed N`` fixes faults and data; ``--kata-tier fast|full`` picks load sizes
(watch mode runs ``fast`` first); ``--kata-json PATH`` writes machine-readable results.

Every graded test gets a fresh database (its own PostgreSQL schema, or its own SQLite file) and
fresh fake services, so tests never see each other's data. A failure is reported as a diagnosis
in the candidate's terms; the scorecard at the end gives one line per task.

A grading run forks (``supervisor``): the child loads the solution, guarded (``tamper``), after
the tests are collected, runs them and reports each event; the parent prints the scorecard and
writes the JSON from that report, so that a solution that ends, interrupts or hangs the child
fails instead of passing by default.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import os
import re
import shlex
from collections.abc import AsyncIterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from ..paths import kata_home
from ..progress import Progress, counts_as_progress
from ..scope import scoped
from ..sql.config import DatabaseConfig, resolve_database_url
from ..sql.reuse import ReusedSpace
from ..tasks import LETTERS
from ..worker.solutions import CANDIDATE_PATH, Solution, load_solution
from ..world import World
from ..world.history import Timeline
from . import kit, tamper
from .blocking import SleepGuard
from .channel import report_of
from .clock import use_grading_time_zone
from .confinement import OUTPUT_LIMIT
from .diagnosis import describe_exception, fail
from .kit import (
    FAST,
    FULL,
    Kata,
    LoopBlocked,
    forget_stuck_functions,
    hard_timeout,
    solution_raised,
)
from .precedence import rank
from .scorecard import Outcome, Scorecard
from .shares import share
from .supervisor import supervise, wants_supervision
from .tamper import Snapshot
from .verdicts import is_skip, skip_diagnosis, status_of

settings.register_profile("fast", max_examples=3, deadline=None, derandomize=True)
settings.register_profile("thorough", max_examples=12, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "thorough"))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kata", "campaign-jobs kata grading")
    group.addoption("--solution", default=str(CANDIDATE_PATH), help="solution file to grade")
    group.addoption(
        "--db",
        default=None,
        help="sqlite, postgresql or a database URL (default: DATABASE_URL, else SQLite)",
    )
    group.addoption("--kata-seed", type=int, default=1, help="seed for faults and data")
    group.addoption("--kata-tier", choices=["fast", "full"], default="full", help="load sizes")
    group.addoption("--kata-json", default=None, help="write results as JSON to this path")
    group.addoption("--kata-task", default=None, help="grade only these tasks, e.g. A or BC")
    group.addoption(
        "--kata-shard",
        default=None,
        type=_shard,
        help="grade one share of the tests, e.g. 2/4, shares being of about equal length "
        "(watch mode grades the fast tier as several shares at once)",
    )


def _shard(text: str) -> tuple[int, int]:
    try:
        index, count = (int(part) for part in text.split("/"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a share like 2/4") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"share {text}: expected 1 <= I <= N in I/N")
    return index, count


class _Grading:
    """Session state of the plugin (one per pytest run, kept on the config)."""

    def __init__(self, config: pytest.Config) -> None:
        use_grading_time_zone()  # before the solution loads: it may read the clock at import
        self.solution_path = Path(config.getoption("--solution")).resolve()
        url = resolve_database_url(config.getoption("--db"))
        self.base = DatabaseConfig(url=url)
        #: Each test's database: on PostgreSQL one schema for the whole process, emptied between
        #: tests (made on the first test, dropped at the end of the session).
        self.databases = ReusedSpace(self.base, purpose="grade")
        self.seed: int = config.getoption("--kata-seed")
        self.tier: str = config.getoption("--kata-tier")
        self.json_path = config.getoption("--kata-json")
        self.scorecard = Scorecard(
            self.solution_path.name,
            self.base.dialect,
            self.seed,
            self.tier,
            rerun=rerun_command(config),
        )
        self.solution: Solution | None = None
        self.load_error: BaseException | None = None
        self.tampered: str | None = None
        # Before the load: `from time import sleep` at the top of the file gets the guard's too.
        self.sleep_guard = SleepGuard(self.solution_path)
        self.sleep_guard.install()
        self.load_problem: str | None = None
        self.snapshot: Snapshot | None = None
        forget_stuck_functions()

    def load(self, config: pytest.Config) -> None:
        """Load the solution, once the tests are collected (so that what it does at import
        cannot reach the test modules), guarded, and with the harness's identities taken first
        so that anything it replaces is found."""
        report = report_of(config)

        def report_exit(status: int, where: str) -> None:
            if report:
                report("exit", status=status, where=where)

        tamper.install_guard(self.solution_path, on_exit=report_exit)
        self.snapshot = Snapshot.take(config.hook)
        refused = len(tamper.violations())
        if report:
            report("loading", solution=self.solution_path.name)
        try:
            with hard_timeout(_IMPORT_LIMIT):
                self.solution = load_solution(self.solution_path)
        except LoopBlocked as error:
            self.load_error = error
            self.load_problem = (
                f"importing {self.solution_path.name} did not finish within {_IMPORT_LIMIT:g} s "
                "(a loop or a blocking call at module level)" + _where(error, self.solution_path)
            )
        except BaseException as error:  # a syntax error must grade as a failure, not crash pytest
            if isinstance(error, KeyboardInterrupt) and not tamper.raised_by_solution(error):
                raise
            self.load_error = error
        new = tamper.violations()[refused:] + tamper.running_threads()
        if new and self.load_problem is None:
            self.load_problem = f"{new[0]} (at import): the grader refuses it"
        if report:
            report("loaded")
        self.check_harness(config, "at import")

    def check_harness(self, config: pytest.Config, when: str) -> None:
        """Fail every task if the solution replaced anything the grader relies on."""
        if self.snapshot is None:
            return
        changes = self.snapshot.changes()
        if not changes:
            return
        more = f" (and {len(changes) - 1} more)" if len(changes) > 1 else ""
        message = f"the solution changed the harness {when}: {changes[0]} was replaced{more}"
        self.snapshot = None  # said once
        report = report_of(config)
        if report:
            report("tampered", message=message)
        self.tampered = message


def rerun_command(config: pytest.Config) -> str:
    """The pytest command that grades the same file, database, tasks, tier and seed again."""
    words = ["pytest"]
    solution = Path(config.getoption("--solution")).resolve()
    if solution != CANDIDATE_PATH.resolve():
        words.append(f"--solution={_shown(solution, config.invocation_params.dir)}")
    if config.getoption("--db"):
        words += ["--db", config.getoption("--db")]
    if config.getoption("--kata-task"):
        words += ["--kata-task", config.getoption("--kata-task").upper()]
    if config.getoption("--kata-tier") != "full":
        words += ["--kata-tier", config.getoption("--kata-tier")]
    words += ["--kata-seed", str(config.getoption("--kata-seed"))]
    return shlex.join(words)


def _shown(path: Path, here: Path) -> str:
    """``path`` relative to where pytest was run, when it is below it."""
    try:
        return str(path.relative_to(here.resolve()))
    except ValueError:
        return str(path)


#: Seconds the solution's import may take (the alarm interrupts a loop at module level).
_IMPORT_LIMIT = 15.0


_KEY = pytest.StashKey[_Grading]()


@pytest.hookimpl(tryfirst=True)
def pytest_cmdline_main(config: pytest.Config) -> int | None:
    """A grading run goes to a child process; this one gives the verdict (see supervisor)."""
    if not wants_supervision(config):
        return None
    url = resolve_database_url(config.getoption("--db"))
    scorecard = Scorecard(
        Path(config.getoption("--solution")).name,
        DatabaseConfig(url=url).dialect,
        config.getoption("--kata-seed"),
        config.getoption("--kata-tier"),
        rerun=rerun_command(config),
    )
    code = supervise(config, scorecard, config.getoption("--kata-json"))
    record_progress(config, scorecard)
    return code


def record_progress(config: pytest.Config, scorecard: Scorecard) -> None:
    """Record the verdict of each task this run graded in full in the candidate's progress
    file, as ``grade`` and ``dev`` do: one notion of progress, whatever command graded. A task
    narrowed by ``-k``, ``-m``, node ids or ``--deselect``, or stopped early (``-x``), has no
    verdict to record."""
    option = config.option
    narrowed = (
        option.keyword
        or option.markexpr
        or getattr(option, "deselect", None)
        or any("::" in arg for arg in config.args)
        or config.getoption("--kata-shard")
    )
    if narrowed or not counts_as_progress(Path(config.getoption("--solution"))):
        return
    progress = Progress.load(kata_home() / "progress.json", source="pytest")
    # The session record takes a run's verdicts from the process that started it: ``dev`` and
    # ``grade`` record their grading children's (which they run with --kata-json) themselves.
    journal = config.getoption("--kata-json") is None
    for task, result in scorecard.tasks().items():
        outcomes = [o for o in scorecard.outcomes if o.task == task]
        if not outcomes or any((o.message or "").startswith("not run") for o in outcomes):
            continue
        progress.record_result(
            task,
            result.status,
            tier=scorecard.tier,
            backend=scorecard.backend,
            diagnosis=result.diagnoses[0] if result.diagnoses else None,
            journal=journal,
        )


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_KEY] = _Grading(config)


def _grading(config: pytest.Config) -> _Grading:
    return config.stash[_KEY]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = (config.getoption("--kata-task") or "").upper()
    fast = config.getoption("--kata-tier") == "fast"
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        marker = item.get_closest_marker("task")
        if marker is not None:
            # A warning from the candidate's code (a deprecated call, say) is reported, never a
            # failure: the harness's own suite is where warnings are errors.
            item.add_marker(pytest.mark.filterwarnings("default"))
        chosen = marker is None or not wanted or marker.args[0] in wanted
        if fast and item.get_closest_marker("full_only"):
            chosen = False
        (keep if chosen else drop).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
    # Task order, A to E, whatever the files are called: `-x` stops at the first task that
    # fails, and the end-to-end test (which needs every task) comes last.
    order = {task: index for index, task in enumerate(LETTERS)}
    items[:] = sorted(keep, key=lambda item: order.get(_task_of(item), -1))
    shard = config.getoption("--kata-shard")
    if shard:
        index, count = shard
        mine = share(
            items,
            index,
            count,
            name=lambda item: item.name,
            alone=lambda item: _task_of(item) == "E",
        )
        others = [item for item in items if item not in mine]
        if others:
            config.hook.pytest_deselected(items=others)
        items[:] = mine


def pytest_collection_finish(session: pytest.Session) -> None:
    graded = [item for item in session.items if item.get_closest_marker("task")]
    report = report_of(session.config)
    if report:
        report(
            "collected",
            tests=[
                {
                    "id": item.nodeid,
                    "name": item.nodeid.split("::")[-1],
                    "task": _task_of(item),
                    "timeout": _timeout_of(item),
                    "rank": rank(item, _task_of(item)),
                }
                for item in graded
            ],
        )
    if graded and not session.config.option.collectonly:
        grading = _grading(session.config)
        grading.load(session.config)
        if grading.tampered:
            session.shouldstop = grading.tampered


def _task_of(item: pytest.Item) -> str:
    marker = item.get_closest_marker("task")
    return str(marker.args[0]) if marker else ""


def _timeout_of(item: pytest.Item) -> float:
    marker = item.get_closest_marker("task")
    return float(marker.kwargs.get("timeout", 30.0)) if marker else 30.0


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    try:
        return (yield)
    finally:
        if item.get_closest_marker("task"):
            grading = _grading(item.config)
            grading.check_harness(item.config, f"in {item.name}")
            report = report_of(item.config)
            if grading.tampered:
                item.session.shouldstop = grading.tampered
            elif kit.abandoned and not item.session.shouldstop:
                item.session.shouldstop = kit.abandoned[0]
                if report:
                    report("stopped", message=f"{kit.abandoned[0]} (in {item.name})")


@pytest.hookimpl(wrapper=True)
def pytest_pyfunc_call(pyfuncitem: pytest.Function) -> Any:
    """A KeyboardInterrupt or SystemExit the solution raised in a worker task escapes the event
    loop itself: it fails the test (a real Ctrl-C still stops the run)."""
    try:
        return (yield)
    except (KeyboardInterrupt, SystemExit) as error:
        if pyfuncitem.get_closest_marker("task") is None or not tamper.raised_by_solution(error):
            raise
        kata = pyfuncitem.funcargs.get("kata")
        fail(solution_raised(error, kata if isinstance(kata, Kata) else None))


@pytest.fixture
def solution(request: pytest.FixtureRequest) -> Solution:
    grading = _grading(request.config)
    if grading.solution is None or grading.load_problem:
        if grading.load_problem:
            fail(f"{grading.solution_path.name} does not load: {grading.load_problem}")
        error = grading.load_error
        assert error is not None
        pytest.fail(
            f"{grading.solution_path.name} does not load: "
            f"{describe_exception(error, grading.solution_path)}",
            pytrace=False,
        )
    return grading.solution


@pytest.fixture
async def kata(request: pytest.FixtureRequest, solution: Solution) -> AsyncIterator[Kata]:
    grading = _grading(request.config)
    sizes = FAST if grading.tier == "fast" else FULL
    # The grader's own statements (the schema, its setup and checks) skip the simulated
    # round-trip latency; the candidate's code, called as a worker, pays it (see Scope.latency).
    with scoped(latency=False):
        async with grading.databases.database() as database:
            world = World(database)
            with world.active():
                yield Kata(solution, world, seed=grading.seed, sizes=sizes, tier=grading.tier)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Any:
    """A ``time.sleep`` in the solution fails the test naming its line, whatever else happened
    after it (the solution may have swallowed the failure, or timed out because of it)."""
    guard = _grading(item.config).sleep_guard
    guard.reset()
    try:
        return (yield)
    finally:
        if guard.blocking and item.get_closest_marker("task") is not None:
            fail(guard.blocking[0].diagnosis())


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    # Before pytest's unittest plugin turns a SkipTest into a Skipped of its own.
    raised = call.excinfo.value if call.excinfo is not None else None
    report = yield
    grading = _grading(item.config)
    marker = item.get_closest_marker("task")
    if marker is None:
        return report
    diagnosis = None
    if is_skip(raised) and raised is not None and report.when != "teardown":
        kata = item.funcargs.get("kata") if hasattr(item, "funcargs") else None
        function = kata.current_function if isinstance(kata, Kata) else None
        diagnosis = skip_diagnosis(raised, grading.solution_path, function)
        report.outcome = "failed"
        report.longrepr = diagnosis
        with contextlib.suppress(AttributeError):
            del report.wasxfail
    elif report.failed and call.excinfo is not None:
        error = call.excinfo.value
        if isinstance(error, pytest.fail.Exception):
            diagnosis = str(error)
        elif isinstance(error, LoopBlocked):
            kata = item.funcargs.get("kata") if hasattr(item, "funcargs") else None
            doing = kata.phase if isinstance(kata, Kata) else "running"
            diagnosis = (
                f"the event loop was blocked for {error.seconds:g} s while {doing}: a "
                "blocking call (time.sleep, a busy loop, synchronous I/O) in async code"
                + _where(error, grading.solution_path)
            )
        else:
            kata = item.funcargs.get("kata") if hasattr(item, "funcargs") else None
            function = kata.current_function if isinstance(kata, Kata) else None
            diagnosis = describe_exception(error, grading.solution_path, function)
            if isinstance(error, OSError) and error.errno == errno.EFBIG:
                diagnosis += (
                    f" — the solution wrote more than {OUTPUT_LIMIT >> 20} MB of output (a print "
                    "in a loop?), the most a graded test may write"
                )
        report.longrepr = diagnosis
    kata = item.funcargs.get("kata") if hasattr(item, "funcargs") else None
    try:
        evidence = _evidence(kata, diagnosis) if report.failed and report.when == "call" else None
    except Exception as error:  # a bug in drawing the timeline must not cost the verdict
        evidence = None
        report.longrepr = f"{report.longrepr}\n(the timeline could not be drawn: {error!r})"
    replay = None
    if evidence and diagnosis:
        replay = f"{rerun_command(item.config)} {shlex.quote(item.nodeid)}"
        told = [*evidence.lines(), f"  replay: {replay}"]
        report.longrepr = "\n".join([diagnosis, _WHAT_HAPPENED, *told])
        report.user_properties.append(("timeline", told))  # for watch mode's board (key t)
    _cut_output(item, report)
    if report.when == "call" or (report.when == "setup" and report.failed):
        status = status_of(report.passed)
        advice = [value for key, value in report.user_properties if key == "advice"]
        warnings = [value for key, value in report.user_properties if key == "warning"]
        outcome = Outcome(
            item.nodeid.split("::")[-1],
            marker.args[0],
            status,
            diagnosis,
            round(report.duration, 3),
            advice,
            warnings,
            evidence.to_json() if evidence else [],
            replay,
            rank=rank(item, marker.args[0]),
        )
        grading.scorecard.add(outcome)
        child = report_of(item.config)
        if child:
            child("result", id=item.nodeid, outcome=asdict(outcome))
    return report


def _evidence(kata: object, diagnosis: str | None) -> Timeline | None:
    """The timeline behind a failure: the one the test chose (``Kata.explain``), else that of
    the first job the diagnosis names, when what happened to it was a race (workers took turns
    on it, or it crashed or was recovered); a lone worker's mistake needs no timeline."""
    if not isinstance(kata, Kata) or not diagnosis:
        return None
    if kata.evidence is not None:
        return kata.evidence or None
    named = _JOB.search(diagnosis)
    if named is None:
        return None
    timeline = kata.explain([int(named.group(1))])
    return timeline if timeline.interleaved else None


_JOB = re.compile(r"\bjobs? (\d+)\b")
#: Where a race's timeline starts in a failed test's report (watch mode cuts it off there).
_WHAT_HAPPENED = "what happened:"


#: Characters of a test's captured output kept for the report (the end of it).
_OUTPUT_KEPT = 20_000


def _cut_output(item: pytest.Item, report: pytest.TestReport) -> None:
    """A solution that prints in a loop must not flood the terminal with megabytes of it."""

    def cut(content: str) -> str:
        if len(content) <= _OUTPUT_KEPT:
            return content
        return f"[{len(content) - _OUTPUT_KEPT:,} characters cut]\n" + content[-_OUTPUT_KEPT:]

    report.sections = [(title, cut(content)) for title, content in report.sections]
    sections = getattr(item, "_report_sections", None)
    if sections:
        sections[:] = [(when, key, cut(content)) for when, key, content in sections]


def _where(error: LoopBlocked, solution: Path) -> str:
    frame = error.frame
    while frame is not None:
        if Path(frame.f_code.co_filename).resolve() == solution:
            return f", at {solution.name}:{frame.f_lineno} in {frame.f_code.co_name}()"
        frame = frame.f_back
    return ""


def pytest_sessionfinish(session: pytest.Session) -> None:
    grading = session.config.stash.get(_KEY, None)
    if grading is not None:
        grading.databases.close_now()


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    grading = _grading(config)
    if not grading.scorecard.outcomes or report_of(config):
        return  # a supervised child: its parent prints the verdict (and writes the JSON)
    from rich.console import Console

    terminalreporter.write_line("")
    grading.scorecard.print(
        Console(file=terminalreporter._tw._file, width=terminalreporter._tw.fullwidth)
    )
    if grading.json_path:
        grading.scorecard.write_json(Path(grading.json_path))
