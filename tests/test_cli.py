"""``python -m harness``'s commands, driven with click's CliRunner, and the board they print.

Every test works on a temporary copy of the candidate's file and a temporary ``.kata`` (via
``KATA_HOME``), never on the real ones.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from rich.console import Console

from harness import utcnow
from harness.cli import App, main
from harness.cli.board import BoardPanel, BoardState, RunLine, TaskRow, render_board
from harness.cli.interview import clock
from harness.cli.sources import (
    PRISTINE_PATH,
    function_sources,
    reference_section,
    restore_function,
)
from harness.paths import PROJECT_ROOT
from harness.progress import Progress
from harness.tasks import FUNCTIONS
from harness.worker.solutions import CANDIDATE_PATH, REFERENCE_PATH

Invoke = Callable[..., Result]


@pytest.fixture
def home(tmp_path: Path) -> Path:
    return tmp_path / "kata-home"


@pytest.fixture
def invoke(home: Path) -> Invoke:
    runner = CliRunner()

    def run(*args: str) -> Result:
        return runner.invoke(
            main, list(args), env={"KATA_HOME": str(home), "COLUMNS": "120"}, catch_exceptions=False
        )

    return run


@pytest.fixture
def stub_copy(tmp_path: Path) -> Path:
    copy = tmp_path / "solution.py"
    shutil.copyfile(PRISTINE_PATH, copy)
    return copy


def reference_task(source: str, task: str) -> str:
    """``source`` with task's function replaced by the reference's section for it."""
    sources = function_sources(source)
    assert sources is not None
    return source.replace(
        sources[FUNCTIONS[task]], reference_section(REFERENCE_PATH.read_text(), task).rstrip()
    )


@pytest.fixture
def solved_copy(tmp_path: Path) -> Path:
    """A candidate's file with every task written (the reference's sections in the stub)."""
    source = PRISTINE_PATH.read_text()
    for task in "ABCD":
        source = reference_task(source, task)
    # The reference's helpers serve several tasks; bring along the imports they need.
    source = source.replace(
        "from __future__ import annotations\n",
        "from __future__ import annotations\n\nimport asyncio\nimport random\n"
        "from collections.abc import Awaitable, Callable\n"
        "from typing import TypeVar\n\nT = TypeVar('T')\n",
        1,
    )
    copy = tmp_path / "solved.py"
    copy.write_text(source)
    return copy


# --- the pristine stub ---------------------------------------------------------------------------


def test_the_pristine_stub_is_the_shipped_candidate_file_with_four_stubs() -> None:
    pristine = PRISTINE_PATH.read_text()
    functions = function_sources(pristine)
    assert functions is not None
    for task, function in FUNCTIONS.items():
        assert f'raise NotImplementedError("Task {task}: {function}")' in functions[function]
    # As shipped, the candidate's file is the stub (a candidate's own edits aside).
    if "NotImplementedError" in CANDIDATE_PATH.read_text():
        assert function_sources(CANDIDATE_PATH.read_text()).keys() == functions.keys()


# --- grade ---------------------------------------------------------------------------------------


def test_grade_passes_the_reference_on_the_fast_tier(invoke: Invoke, tmp_path: Path) -> None:
    result = invoke(
        "grade",
        "--solution",
        str(REFERENCE_PATH),
        "--tier",
        "fast",
        "--db",
        f"sqlite:///{tmp_path / 'kata.db'}",
    )
    assert result.exit_code == 0, result.output
    for task in "ABCDE":
        assert re.search(rf"{task}  \w.*✔ passing", result.output), result.output
    assert "fast tier on sqlite: done" in result.output


def test_grade_of_the_stub_fails_and_says_not_started(
    invoke: Invoke, stub_copy: Path, home: Path
) -> None:
    result = invoke("grade", "--solution", str(stub_copy), "--tier", "fast")
    assert result.exit_code == 1
    assert "not started" in result.output
    assert "claim_next_job() still raises NotImplementedError" in result.output
    assert Progress.load(home / "progress.json").tasks["A"].last_status == "not started"


def test_grade_reports_a_file_that_does_not_load(invoke: Invoke, tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text(PRISTINE_PATH.read_text() + "\ndef oops(:\n")
    result = invoke("grade", "--solution", str(broken), "--tier", "fast", "--task", "A")
    assert result.exit_code == 1
    assert "does not load" in result.output and "SyntaxError" in result.output


# --- hint ----------------------------------------------------------------------------------------


def test_hint_shows_the_next_level_at_each_call_and_remembers(invoke: Invoke, home: Path) -> None:
    first = invoke("hint", "A")
    assert "hint 1 of 3: a nudge" in first.output and "Twenty workers" in first.output
    assert "again shows the concept" in first.output
    second = invoke("hint", "a")
    assert "hint 2 of 3: the concept" in second.output
    assert "SKIP LOCKED" in second.output
    third = invoke("hint", "A")
    assert "hint 3 of 3: the shape of the code" in third.output
    assert "Job.from_row" in third.output
    fourth = invoke("hint", "A")
    assert "hint 3 of 3" in fourth.output and "last level" in fourth.output
    assert Progress.load(home / "progress.json").hint_level("A") == 3
    assert Progress.load(home / "progress.json").hint_level("B") == 0


def test_hint_level_option_shows_that_level(invoke: Invoke, home: Path) -> None:
    result = invoke("hint", "B", "--level", "2")
    assert "hint 2 of 3: the concept" in result.output
    assert "65,535" in result.output and "250" in result.output  # the contract's limits
    assert "nudge" not in result.output.split("\n")[0]
    assert Progress.load(home / "progress.json").hint_level("B") == 2
    assert invoke("hint", "B", "--level", "1").exit_code == 0
    assert Progress.load(home / "progress.json").hint_level("B") == 2  # never goes down


def test_hint_refuses_an_unknown_task(invoke: Invoke) -> None:
    result = CliRunner().invoke(main, ["hint", "E"])
    assert result.exit_code == 2


# --- reset ---------------------------------------------------------------------------------------


def test_reset_of_one_task_restores_its_stub_and_keeps_a_backup(
    invoke: Invoke, solved_copy: Path, home: Path
) -> None:
    before = solved_copy.read_text()
    result = invoke("reset", "B", "--solution", str(solved_copy))
    assert result.exit_code == 0, result.output
    assert "create_campaign_jobs() is back to its stub" in result.output

    (backup,) = (home / "backups").iterdir()
    assert re.fullmatch(r"solved-B-\d{8}-\d{6}\.py", backup.name)
    assert backup.read_text() == before
    after, pristine = (
        function_sources(solved_copy.read_text()),
        function_sources(PRISTINE_PATH.read_text()),
    )
    old = function_sources(before)
    assert after is not None and pristine is not None and old is not None
    assert after["create_campaign_jobs"] == pristine["create_campaign_jobs"]
    for name in ("claim_next_job", "send_email_step", "process_job", "_with_retries", "_key"):
        assert after[name] == old[name]


def test_reset_works_on_a_file_that_does_not_parse(invoke: Invoke, stub_copy: Path) -> None:
    source = reference_task(stub_copy.read_text(), "A").replace(
        "return Job.from_row(rows[0]) if rows else None", "return Job.from_row(rows[0] if"
    )
    stub_copy.write_text(source)
    assert function_sources(source) is None
    assert invoke("reset", "A", "--solution", str(stub_copy)).exit_code == 0
    assert "rows[0] if\n" not in stub_copy.read_text()
    assert "_CLAIM = " in stub_copy.read_text()  # the candidate's helpers stay
    restored = function_sources(stub_copy.read_text())
    assert restored is not None
    assert 'raise NotImplementedError("Task A: claim_next_job")' in restored["claim_next_job"]


def test_reset_all_restores_the_whole_file(invoke: Invoke, solved_copy: Path, home: Path) -> None:
    invoke("reset", "A", "--solution", str(solved_copy))
    result = invoke("reset", "all", "--solution", str(solved_copy))
    assert result.exit_code == 0
    assert solved_copy.read_text() == PRISTINE_PATH.read_text()
    assert len(list((home / "backups").iterdir())) == 2


def test_restore_function_appends_a_function_that_was_deleted() -> None:
    pristine = PRISTINE_PATH.read_text()
    span = function_sources(pristine)
    assert span is not None
    without = pristine.replace(span["process_job"], "")
    restored = function_sources(restore_function(without, pristine, "process_job"))
    assert restored is not None and restored["process_job"] == span["process_job"]


# --- solution ------------------------------------------------------------------------------------


def test_solution_is_refused_until_the_task_has_passed(invoke: Invoke) -> None:
    refused = invoke("solution", "A")
    assert refused.exit_code == 1
    assert "has not passed" in refused.output and "--force" in refused.output
    assert "SKIP LOCKED" not in refused.output


def test_solution_with_force_shows_the_reference_section(invoke: Invoke) -> None:
    result = invoke("solution", "A", "--force")
    assert result.exit_code == 0
    assert "FOR UPDATE SKIP LOCKED" in result.output
    assert "from harness import" in result.output  # the header, for context
    assert "async def create_campaign_jobs" not in result.output  # and only Task A


def test_solution_is_shown_once_progress_says_it_passed(invoke: Invoke, home: Path) -> None:
    progress = Progress.load(home / "progress.json")
    progress.record_result("C", "passing", tier="full", backend="sqlite")
    result = invoke("solution", "C")
    assert result.exit_code == 0
    assert "async def send_email_step" in result.output
    assert "async def claim_next_job" not in result.output
    assert invoke("solution", "D").exit_code == 1


# --- status --------------------------------------------------------------------------------------


def test_status_shows_progress_per_task(invoke: Invoke, home: Path) -> None:
    fresh = invoke("status")
    assert fresh.exit_code == 0
    assert "not graded" in fresh.output and "0/3" in fresh.output
    progress = Progress.load(home / "progress.json")
    progress.record_result("A", "passing", tier="full", backend="sqlite")
    progress.record_result("A", "passing", tier="full", backend="postgresql")
    progress.record_result("B", "failing", tier="fast", backend="sqlite")
    progress.see_hint("B", 2)
    result = invoke("status")
    line_a = next(line for line in result.output.splitlines() if "claim_next_job" in line)
    assert "passing" in line_a and "sqlite, postgresql" in line_a
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d", line_a)
    line_b = next(line for line in result.output.splitlines() if "create_campaign" in line)
    assert "failing" in line_b and "2/3" in line_b and "—" in line_b


# --- progress ------------------------------------------------------------------------------------


def test_progress_persists_across_app_objects(tmp_path: Path) -> None:
    first = App(home=tmp_path)
    assert first.progress.record_result("A", "passing", tier="full", backend="sqlite") is True
    first.progress.see_hint("C", 1)
    second = App(home=tmp_path)
    assert second.progress is not first.progress
    assert second.progress.passed("A") and not second.progress.passed("B")
    assert second.progress.hint_level("C") == 1
    assert second.progress.record_result("A", "passing", tier="full", backend="sqlite") is False


def test_only_a_full_tier_pass_counts_as_passed(tmp_path: Path) -> None:
    progress = Progress.load(tmp_path / "progress.json")
    progress.record_result("A", "passing", tier="fast", backend="sqlite")
    assert not progress.passed("A")
    assert progress.tasks["A"].last_status == "passing"


def test_a_damaged_progress_file_is_a_fresh_start(tmp_path: Path) -> None:
    (tmp_path / "progress.json").write_text("{not json")
    assert not Progress.load(tmp_path / "progress.json").passed("A")


def test_kata_home_comes_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KATA_HOME", str(tmp_path))
    assert App().progress_path == tmp_path / "kata.sqlite3"
    monkeypatch.delenv("KATA_HOME")
    assert App().home == PROJECT_ROOT / ".kata"


# --- the board -----------------------------------------------------------------------------------


def render(state: BoardState) -> str:
    console = Console(record=True, width=100, color_system=None)
    console.print(render_board(state))
    return console.export_text()


def board(**rows: TaskRow) -> BoardState:
    state = BoardState(
        solution="candidate/solution.py",
        backend="SQLite kata.db (1 ms/round trip)",
        watching="watching solution.py for saves (watchfiles)",
    )
    state.tasks.update(rows)
    return state


def line_of(text: str, task: str) -> str:
    return next(line for line in text.splitlines() if line.startswith(f"{task}  "))


def test_the_board_before_anything_is_graded() -> None:
    text = render(board())
    for task in "ABCDE":
        assert "not graded" in line_of(text, task)
    assert "watching solution.py" in text
    for key in ("h  hint", "r  re-run", "f  full tier", "s  solution", "q  quit"):
        assert key in text


@pytest.mark.parametrize(
    "status", ["not started", "failing", "passing", "passing on both backends"]
)
def test_the_board_shows_each_status(status: str) -> None:
    row = TaskRow(
        "B",
        status,
        passed=3,
        total=8,
        tier="full",
        diagnosis=None if status.startswith("passing") else f"{status}: because",
    )
    text = render(board(B=row))
    assert status in line_of(text, "B")
    assert "3/8" in line_of(text, "B") and "full" in line_of(text, "B")


def test_the_board_shows_the_first_diagnosis_of_the_first_failing_task() -> None:
    text = render(
        board(
            A=TaskRow("A", "passing", 5, 5, tier="fast"),
            B=TaskRow("B", "failing", 2, 8, "B made one round trip per address", tier="fast"),
            C=TaskRow("C", "failing", 0, 10, "C retried a permanent error", tier="fast"),
        )
    )
    assert "B · create_campaign_jobs" in text
    assert "B made one round trip per address" in text
    assert "C retried a permanent error" not in text


def test_the_board_marks_earlier_versions_and_tasks_being_graded() -> None:
    text = render(
        board(
            A=TaskRow("A", "passing", 5, 5, tier="fast", stale=True),
            B=TaskRow("B", "failing", 1, 8, "x", tier="fast", grading=True),
        )
    )
    assert "(earlier version)" in line_of(text, "A")
    assert "grading…" in line_of(text, "B")


def test_the_board_shows_the_runs_with_their_time_and_backend() -> None:
    state = board()
    state.runs = [
        RunLine("fast", "sqlite", "done", 2.34),
        RunLine("full", "sqlite", "running", 7.5, done=3, total=6),
        RunLine("full", "postgresql", "timed out", 30.0),
    ]
    text = render(state)
    assert "fast tier on sqlite: done in 2.3 s" in text
    assert "full tier on sqlite: grading 7.5 s (3/6 tests)" in text
    assert "full tier on postgresql: timed out in 30.0 s" in text
    assert "backend SQLite kata.db" in text


def test_the_board_shows_a_notice_a_panel_and_capped_output() -> None:
    state = board()
    state.notice = "timed out after 20 s in test_empty_queue_gives_none"
    state.panel = BoardPanel("hint for A · claim_next_job() · 1 of 3: a nudge", "Think *twice*.")
    state.output, state.output_dropped = [f"line {n}" for n in range(20)], 7
    text = render(state)
    assert "timed out after 20 s" in text
    assert "hint for A" in text and "Think twice." in text
    assert "output truncated: 7 earlier lines not shown" in text
    assert "line 19" in text


def test_the_board_in_an_interview() -> None:
    started = utcnow()
    state = board()
    state.interview = clock(started, started + timedelta(minutes=20))
    text = render(state)
    assert "Interview implement 20:00 left in this part · 40:00 left of 60 min" in text
    for part in ("design 15", "implement 25", "debug 15", "wrap up 5"):
        assert part in text


def test_the_grade_board_has_no_keys() -> None:
    state = board()
    state.keys, state.watching = False, None
    assert "q  quit" not in render(state)


def test_a_database_url_is_checked_before_anything_runs(invoke: Invoke) -> None:
    result = CliRunner().invoke(main, ["grade", "--db", "mysql://somewhere/kata"])
    assert result.exit_code == 2
    assert "unsupported database URL" in result.output
    result = CliRunner().invoke(main, ["dev", "--second-db", "nonsense"])
    assert result.exit_code == 2 and "--second-db" in result.output


def test_python_dash_m_harness_lists_the_commands() -> None:
    import subprocess
    import sys

    shown = subprocess.run(
        [sys.executable, "-m", "harness", "--help"],
        capture_output=True,
        text=True,
        cwd=PROJECT_ROOT,
        check=True,
    ).stdout
    assert shown.startswith("Usage: python -m harness")
    for command in ("dev", "grade", "hint", "reset", "solution", "status"):
        assert f"  {command} " in shown
