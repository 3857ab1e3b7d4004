"""The grading plugin (loaded by the root conftest.py): ``pytest`` grades ``candidate/solution.py``.

Options: ``--solution PATH`` grades another file; ``--db URL`` (or ``DATABASE_URL``) picks the
backend; ``--kata-seed N`` fixes faults and data; ``--kata-tier fast|full`` picks load sizes
(watch mode runs ``fast`` first); ``--kata-json PATH`` writes machine-readable results.

Every graded test gets a fresh database (its own PostgreSQL schema, or its own SQLite file) and
fresh fake services, so tests never see each other's data. A failure is reported as a diagnosis
in the candidate's terms; the scorecard at the end gives one line per task.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import settings

from ..config import DatabaseConfig, default_database_url
from ..isolation import isolated_database
from ..services import Services, use_services
from ..solutions import CANDIDATE_PATH, Solution, load_solution
from .clock import use_grading_time_zone
from .diagnosis import describe_exception
from .kit import FAST, FULL, Kata, LoopBlocked
from .scorecard import Outcome, Scorecard

settings.register_profile("fast", max_examples=3, deadline=None, derandomize=True)
settings.register_profile("thorough", max_examples=12, deadline=None, derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "thorough"))


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("kata", "campaign-jobs kata grading")
    group.addoption("--solution", default=str(CANDIDATE_PATH), help="solution file to grade")
    group.addoption("--db", default=None, help="database URL (default: DATABASE_URL or SQLite)")
    group.addoption("--kata-seed", type=int, default=1, help="seed for faults and data")
    group.addoption("--kata-tier", choices=["fast", "full"], default="full", help="load sizes")
    group.addoption("--kata-json", default=None, help="write results as JSON to this path")
    group.addoption("--kata-task", default=None, help="grade only these tasks, e.g. A or BC")


class _Grading:
    """Session state of the plugin (one per pytest run, kept on the config)."""

    def __init__(self, config: pytest.Config) -> None:
        use_grading_time_zone()  # before the solution loads: it may read the clock at import
        self.solution_path = Path(config.getoption("--solution")).resolve()
        url = config.getoption("--db") or default_database_url()
        self.base = DatabaseConfig(url=url)
        self.seed: int = config.getoption("--kata-seed")
        self.tier: str = config.getoption("--kata-tier")
        self.json_path = config.getoption("--kata-json")
        self.scorecard = Scorecard(self.solution_path.name, self.base.dialect, self.seed, self.tier)
        self.solution: Solution | None = None
        self.load_error: BaseException | None = None
        try:
            self.solution = load_solution(self.solution_path)
        except BaseException as error:  # a syntax error must grade as a failure, not crash pytest
            self.load_error = error


_KEY = pytest.StashKey[_Grading]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_KEY] = _Grading(config)


def _grading(config: pytest.Config) -> _Grading:
    return config.stash[_KEY]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    wanted = (config.getoption("--kata-task") or "").upper()
    fast = config.getoption("--kata-tier") == "fast"
    keep, drop = [], []
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
        items[:] = keep


@pytest.fixture
def solution(request: pytest.FixtureRequest) -> Solution:
    grading = _grading(request.config)
    if grading.solution is None:
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
    async with isolated_database(grading.base, purpose="grade") as database:
        services = Services()
        with use_services(services):
            yield Kata(
                solution, database, services, seed=grading.seed, sizes=sizes, tier=grading.tier
            )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    report = yield
    grading = _grading(item.config)
    marker = item.get_closest_marker("task")
    if marker is None:
        return report
    diagnosis = None
    if report.failed and call.excinfo is not None:
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
        report.longrepr = diagnosis
    if report.when == "call" or (report.when == "setup" and report.failed):
        status = "pass" if report.passed else "fail"
        advice = [value for key, value in report.user_properties if key == "advice"]
        grading.scorecard.add(
            Outcome(
                item.nodeid.split("::")[-1],
                marker.args[0],
                status,
                diagnosis,
                round(report.duration, 3),
                advice,
            )
        )
    return report


def _where(error: LoopBlocked, solution: Path) -> str:
    frame = error.frame
    while frame is not None:
        if Path(frame.f_code.co_filename).resolve() == solution:
            return f", at {solution.name}:{frame.f_lineno} in {frame.f_code.co_name}()"
        frame = frame.f_back
    return ""


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    grading = _grading(config)
    if not grading.scorecard.outcomes:
        return
    from rich.console import Console

    terminalreporter.write_line("")
    grading.scorecard.print(
        Console(file=terminalreporter._tw._file, width=terminalreporter._tw.fullwidth)
    )
    if grading.json_path:
        grading.scorecard.write_json(Path(grading.json_path))
