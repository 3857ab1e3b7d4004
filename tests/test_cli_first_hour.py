"""A new user's first hour with ``python -m harness``: code printed whole in an 80-column pipe,
one way to name a database in every command, headers that say what grading really uses, an
interview that ends when its session quits, and a failing ``grade`` that says so at the end.

As in test_cli.py, every test works on temporary copies and a temporary ``.kata``.
"""

from __future__ import annotations

import asyncio
import importlib
import io
import json
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

import setup_db
from conftest import POSTGRES_URL
from harness import utcnow
from harness.cli import App, main
from harness.cli.board import BoardPanel, BoardState, RunLine, render_board
from harness.cli.code import CUT_NOTE, CodeMarkdown
from harness.cli.grading_process import GradeRequest
from harness.cli.hints import LEVELS, hint
from harness.cli.interview import last_interview
from harness.cli.pipeline import Scoreboard
from harness.cli.results import GradeRun
from harness.cli.session import DevSession
from harness.cli.sources import PRISTINE_PATH, reference_header, reference_section
from harness.progress import Progress
from harness.sql.config import DatabaseConfig
from harness.worker.solutions import REFERENCE_PATH
from scenarios import cli as scenarios_cli

Invoke = Callable[..., Result]

# The modules, not the commands of the same names that the package exports.
dev_command = importlib.import_module("harness.cli.dev")
grade_command = importlib.import_module("harness.cli.grade")

NARROW = {"COLUMNS": "80", "LINES": "24"}


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "kata-home"


@pytest.fixture
def invoke(home: Path) -> Invoke:
    """``python -m harness`` at 80 columns, its output a pipe (CliRunner's is never a tty)."""

    def run(*args: str, env: dict[str, str] | None = None) -> Result:
        return CliRunner().invoke(
            main,
            list(args),
            catch_exceptions=False,
            env={"KATA_HOME": str(home), **NARROW, **(env or {})},
        )

    return run


@pytest.fixture
def stub_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "solution.py"
    shutil.copyfile(PRISTINE_PATH, copy)
    return copy


def database_env(backend: str, tmp_path: Path) -> dict[str, str]:
    """DATABASE_URL for ``backend``: what its bare name (``--db sqlite``) stands for."""
    url = f"sqlite:///{tmp_path / 'named.db'}" if backend == "sqlite" else POSTGRES_URL
    return {"DATABASE_URL": url}


def code_lines(code: str) -> list[str]:
    return [line.rstrip() for line in code.splitlines() if line.strip()]


# --- code is printed whole -----------------------------------------------------------------------


def test_solution_prints_every_line_whole_in_an_80_column_pipe(invoke: Invoke) -> None:
    result = invoke("solution", "C", "--force")
    assert result.exit_code == 0, result.output
    reference = REFERENCE_PATH.read_text()
    lines = code_lines(reference_header(reference) + "\n" + reference_section(reference, "C"))
    assert max(map(len, lines)) > 80  # else this test would prove nothing
    printed = {line.rstrip() for line in result.output.splitlines()}
    assert [line for line in lines if line not in printed] == []


@pytest.mark.parametrize("task", "ABCD")
def test_the_deepest_hint_prints_its_code_whole_in_an_80_column_pipe(
    invoke: Invoke, task: str
) -> None:
    result = invoke("hint", task, "--level", str(LEVELS))
    assert result.exit_code == 0, result.output
    blocks = [
        token.content
        for token in CodeMarkdown(hint(task, LEVELS).text).parsed
        if token.type in ("fence", "code_block")
    ]
    lines = [line for block in blocks for line in code_lines(block)]
    assert lines and max(map(len, lines)) > 80
    printed = {line.rstrip() for line in result.output.splitlines()}
    assert [line for line in lines if line not in printed] == []


def test_the_board_says_when_its_panel_had_to_cut_code() -> None:
    long_line = "x = '" + "y" * 100 + "'"
    state = BoardState(solution="candidate/solution.py", backend="SQLite")
    state.panel = BoardPanel("reference for A", f"def f():\n    {long_line}\n", kind="python")
    narrow, wide = (Console(record=True, width=width, color_system=None) for width in (80, 200))
    for console in (narrow, wide):
        console.print(render_board(state))
    assert CUT_NOTE.split(":")[0] in narrow.export_text()
    assert long_line in wide.export_text() and CUT_NOTE.split(":")[0] not in wide.export_text()


# --- one way to name a database ------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--db", "--second-db"])
def test_dev_accepts_a_backends_name_for_either_database(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, option: str, backend: str
) -> None:
    seen: dict[str, Any] = {}

    class Session:
        def __init__(self, app: App, request: GradeRequest, **options: Any) -> None:
            seen.update(url=request.url, second=options["second_db"])

        async def run(self) -> None:
            pass

    monkeypatch.setattr(dev_command, "DevSession", Session)
    env = database_env(backend, tmp_path)
    result = invoke("dev", option, backend, env=env)
    assert result.exit_code == 0, result.output
    named = seen["url"] if option == "--db" else seen["second"]
    assert named == env["DATABASE_URL"]
    assert DatabaseConfig(url=named).dialect == backend


def test_the_drills_and_setup_db_accept_a_backends_name(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, backend: str
) -> None:
    seen: list[DatabaseConfig] = []

    class Drill:
        def __init__(
            self, incident: object, load: object, config: DatabaseConfig, *rest: object
        ) -> None:
            seen.append(config)

        def run(self) -> int:
            return 0

    async def setup(config: DatabaseConfig, **options: Any) -> dict[str, Any]:
        seen.append(config)
        return {
            "created": True,
            "seed": options["seed"],
            "customers": options["customers"],
            "tables": {},
            "undeliverable_customers": 0,
            "jobs_by_status": {},
        }

    monkeypatch.setattr(scenarios_cli, "Drill", Drill)
    monkeypatch.setattr(setup_db, "setup", setup)
    env = database_env(backend, tmp_path)
    drill = CliRunner().invoke(scenarios_cli.main, ["1", "--db", backend], env=env)
    setting_up = CliRunner().invoke(setup_db.main, ["--db", backend], env=env)
    assert drill.exit_code == 0, drill.output
    assert setting_up.exit_code == 0, setting_up.output
    assert [config.dialect for config in seen] == [backend, backend]
    assert seen[0].url == env["DATABASE_URL"]


def test_a_backends_name_without_database_url_is_the_default_of_that_backend(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[str] = []

    class Session:
        def __init__(self, app: App, request: GradeRequest, **options: Any) -> None:
            seen.append(request.url)

        async def run(self) -> None:
            pass

    monkeypatch.setattr(dev_command, "DevSession", Session)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    for name in ("sqlite", "postgres", "postgresql"):
        assert invoke("dev", "--db", name).exit_code == 0
    assert seen[0].startswith("sqlite:///") and seen[0].endswith("kata.db")
    assert seen[1] == seen[2] and seen[1].startswith("postgresql://")


# --- grade: what the header, the last line and the re-run hint say --------------------------------


def test_a_failing_grade_says_so_last_with_counts_and_a_rerun_that_repeats_its_options(
    invoke: Invoke, stub_copy: Path, tmp_path: Path, backend: str
) -> None:
    result = invoke(
        "grade",
        "--solution",
        str(stub_copy),
        "--db",
        backend,
        "--tier",
        "fast",
        "--task",
        "A",
        "--seed",
        "7",
        env=database_env(backend, tmp_path),
    )
    assert result.exit_code == 1, result.output
    lines = result.output.rstrip().splitlines()
    assert lines[-1].startswith("✘ failing: 1 not started (A) · 0/"), result.output
    assert f"fast tier on {backend}" in lines[-1]
    assert "✔" not in result.output.split("backend", 1)[1]  # nothing failing wears a check mark
    rerun = next(line for line in lines if line.startswith("re-run: "))
    assert rerun == (
        f"re-run: python -m harness grade --solution {stub_copy} --db {backend} "
        "--tier fast --task A --seed 7"
    )


def test_the_grade_header_says_every_test_gets_a_fresh_database(
    invoke: Invoke, stub_copy: Path, tmp_path: Path, backend: str
) -> None:
    result = invoke(
        "grade",
        "--solution",
        str(stub_copy),
        "--db",
        backend,
        "--tier",
        "fast",
        "--task",
        "A",
        env=database_env(backend, tmp_path),
    )
    header = next(line for line in result.output.splitlines() if line.startswith("backend "))
    if backend == "sqlite":
        assert header.startswith("backend SQLite, a fresh database file per test")
        assert "named.db" not in header
    else:
        assert header.startswith(
            "backend PostgreSQL 127.0.0.1:5432/test, one schema, emptied for each test"
        )


def test_the_dev_header_says_every_test_gets_a_fresh_database(tmp_path: Path) -> None:
    app = App(home=tmp_path)
    state = app.board_state(
        GradeRequest(solution=PRISTINE_PATH, db_url="sqlite:///kata.db"),
        second_db=POSTGRES_URL,
        watching="watching",
    )
    assert state.backend.startswith("SQLite, a fresh database file per test")
    assert (
        state.second_backend == "PostgreSQL 127.0.0.1:5432/test, one schema, emptied for each test"
    )


def test_a_done_run_that_found_failures_is_marked_failing_on_the_board() -> None:
    state = BoardState(solution="candidate/solution.py", backend="SQLite")
    state.runs = [RunLine("full", "sqlite", "done", 73.4, done=40, total=40, failed=3)]
    console = Console(record=True, width=100, color_system=None)
    console.print(render_board(state))
    text = console.export_text()
    assert "✘ full tier on sqlite: failing, 3 of 40 tests failed (done in 73.4 s)" in text
    assert "✔" not in text


ADVICE = "worker-1's claim had expired, yet worker-1 still changed the job: fence stale workers"


def advised_run(request: GradeRequest) -> GradeRun:
    """A finished run in which Task D passed with the grader's advice (as the event stream and
    the results JSON carry it)."""
    run = GradeRun(request)
    run.apply({"event": "collected", "tests": [{"id": test, "task": "D"} for test in ("d1", "d2")]})
    run.apply({"event": "result", "id": "d1", "task": "D", "outcome": "pass"})
    run.apply({"event": "result", "id": "d2", "task": "D", "outcome": "pass", "advice": [ADVICE]})
    run.stop("done")
    return run


def test_task_ds_advice_shows_at_the_end_of_grade(
    invoke: Invoke, monkeypatch: pytest.MonkeyPatch, stub_copy: Path
) -> None:
    async def run_grading(request: GradeRequest, *, run: GradeRun, **options: Any) -> GradeRun:
        done = advised_run(request)
        run.tests, run.results, run.state = done.tests, done.results, done.state
        return run

    monkeypatch.setattr(grade_command, "run_grading", run_grading)
    result = invoke("grade", "--solution", str(stub_copy), "--task", "D", env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "D · process_job · advice" in result.output and ADVICE in result.output
    assert result.output.rstrip().splitlines()[-1].startswith("✔ passing: task D ·")


def test_task_ds_advice_shows_on_the_dev_board(tmp_path: Path, stub_copy: Path) -> None:
    out = io.StringIO()
    dev = DevSession(
        App(home=tmp_path),
        GradeRequest(solution=stub_copy),
        console=Console(file=out, width=200, color_system=None),
    )
    dev._run_started(advised_run(dev.request))
    dev._refresh()
    dev.console.print(render_board(dev.state))
    assert ADVICE in out.getvalue()


def test_advice_comes_from_the_results_json_when_the_events_have_none(tmp_path: Path) -> None:
    run = GradeRun(GradeRequest(solution=PRISTINE_PATH))
    run.apply({"event": "collected", "tests": [{"id": "d", "task": "D"}]})
    run.apply({"event": "result", "id": "d", "task": "D", "outcome": "pass"})
    run.absorb_scorecard({"tasks": {"D": {"status": "passing", "advice": [ADVICE]}}, "tests": []})
    scoreboard = Scoreboard("sqlite")
    scoreboard.add(run)
    assert scoreboard.rows()["D"].advice == [ADVICE]


def test_the_event_stream_carries_the_graders_advice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from harness.cli import pytest_events

    events = tmp_path / "events.jsonl"
    monkeypatch.setenv(pytest_events.EVENTS_ENV, str(events))
    report = pytest.TestReport(
        "t::d", ("t", 1, "d"), {}, "passed", None, "call", user_properties=[("advice", ADVICE)]
    )
    try:
        pytest_events.pytest_runtest_logreport(report)
    finally:
        pytest_events.pytest_unconfigure()
    assert json.loads(events.read_text())["advice"] == [ADVICE]


# --- the interview ends -------------------------------------------------------------------------


async def test_quitting_the_interview_ends_it_and_a_plain_dev_does_not_record_into_it(
    tmp_path: Path, stub_copy: Path, invoke: Invoke, home: Path
) -> None:
    out = io.StringIO()
    app = App(home=home)
    dev = DevSession(
        app,
        GradeRequest(solution=stub_copy),
        interview=True,
        console=Console(file=out, width=120, color_system=None),
    )
    running = asyncio.create_task(dev.run())
    try:
        for _ in range(600):
            if "every task is still a stub" in out.getvalue():
                break
            await asyncio.sleep(0.05)
        assert Progress.load(app.progress_path).interview is not None
        dev.on_key("q")
    finally:
        dev.quit.set()
        await asyncio.wait_for(running, 30)
    assert "Interview ended after 0:0" in out.getvalue() and "(you quit)" in out.getvalue()
    assert Progress.load(app.progress_path).interview is None

    status = invoke("status", env={"COLUMNS": "200"}).output
    assert "Last interview: started" in status and "(you quit)" in status
    assert "left" not in status.split("Last interview", 1)[1].split(";")[0]

    plain = DevSession(App(home=home), GradeRequest(solution=stub_copy))
    passing = GradeRun(plain.request)  # a full-tier pass: what counts towards an interview
    passing.apply({"event": "collected", "tests": [{"id": "a", "task": "A"}]})
    passing.apply({"event": "result", "id": "a", "task": "A", "outcome": "pass"})
    passing.stop("done")
    plain.scoreboard.add(passing)
    plain.scoreboard.record(passing)
    assert Progress.load(app.progress_path).passed("A")
    ended = last_interview(app.interviews_path)
    assert ended is not None and ended.passed == {}
    assert Progress.load(app.progress_path).interview is None


def test_a_plain_dev_ends_an_interview_that_was_left_open(tmp_path: Path, stub_copy: Path) -> None:
    app = App(home=tmp_path)
    app.progress.start_interview(utcnow() - timedelta(minutes=10))
    plain = DevSession(app, GradeRequest(solution=stub_copy))
    plain._end_leftover_interview()
    assert app.progress.interview is None
    assert plain.state.info is not None and "does not count towards it" in plain.state.info
    app.progress.record_result("A", "passing", tier="full", backend="sqlite")
    ended = last_interview(app.interviews_path)
    assert ended is not None and ended.passed == {} and 9 * 60 <= ended.length <= 11 * 60


def test_an_interview_whose_hour_is_up_ends_with_only_what_passed_within_it(
    tmp_path: Path, stub_copy: Path
) -> None:
    app = App(home=tmp_path)
    started = utcnow() - timedelta(minutes=70)
    interview = app.progress.start_interview(started)
    interview.passed = {
        "A": (started + timedelta(minutes=30)).isoformat(),
        "B": (started + timedelta(minutes=65)).isoformat(),
    }
    app.progress.interview = interview  # progress lives in the store, not in the object
    dev = DevSession(app, GradeRequest(solution=stub_copy), interview=True)
    dev._refresh()
    assert app.progress.interview is None
    ended = last_interview(app.interviews_path)
    assert ended is not None and ended.why == "time is up" and list(ended.passed) == ["A"]
    assert ended.length == 60 * 60
    assert dev.state.interview is not None and dev.state.interview.finished
    assert dev.state.interview_summary is not None
