"""The stretch tasks (F, G) are optional: left as stubs or left out, they are "not started" and
in no one's way; written and wrong, they fail the run like any task."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from conftest import BACKENDS, POSTGRES_URL
from harness.cli.board import BoardState, TaskRow, render_board
from harness.cli.results import TaskTally, all_passing
from harness.cli.sources import PRISTINE_PATH, stub_tasks
from harness.grading.scorecard import Outcome, Scorecard
from harness.paths import PROJECT_ROOT
from harness.tasks import (
    CORE,
    FUNCTIONS,
    STRETCH,
    TaskStatus,
    not_defined,
    not_started,
    settled,
)

STUB = (PROJECT_ROOT / "candidate" / "solution.py").read_text()


def _scorecard(*outcomes: tuple[str, str, str | None]) -> Scorecard:
    card = Scorecard("solution.py", "sqlite", 1, "fast")
    for index, (task, status, message) in enumerate(outcomes):
        card.add(Outcome(f"test_{index}", task, status, message, 0.1))
    return card


def test_every_task_passes_means_a_to_e() -> None:
    assert CORE == "ABCDE" and STRETCH == "FG"
    assert settled("F", TaskStatus.NOT_STARTED) and not settled("A", TaskStatus.NOT_STARTED)
    assert not settled("F", TaskStatus.FAILING)


def test_a_run_passes_with_the_stretch_tasks_not_started_and_fails_with_one_failing() -> None:
    core = [(task, "pass", None) for task in CORE]
    untouched = _scorecard(*core, ("F", "fail", not_started("recover_stalled_jobs")))
    assert untouched.status == "pass"
    left_out = _scorecard(*core, ("G", "fail", not_defined("reserve_send_slot")))
    assert left_out.status == "pass"
    wrong = _scorecard(*core, ("F", "fail", "two reapers recovered job 3 twice"))
    assert wrong.status == "fail"
    core_failing = _scorecard(("A", "fail", not_started("claim_next_job")))
    assert core_failing.status == "fail"


def test_the_watch_verdict_agrees_with_the_scorecard() -> None:
    tallies = {task: TaskTally(task, passed=1) for task in CORE}
    tallies["F"] = TaskTally(task="F", failed=2, diagnoses=[not_started("recover_stalled_jobs")])
    assert all_passing("done", tallies)
    tallies["F"] = TaskTally(task="F", failed=1, diagnoses=["the reaper took a live job"])
    assert not all_passing("done", tallies)


def test_a_stretch_function_left_out_of_the_file_is_not_started() -> None:
    without = STUB.split("# --- Stretch tasks")[0]
    stubs = stub_tasks(without)
    assert stubs["F"] == not_defined("recover_stalled_jobs")
    assert stubs["G"] == not_defined("reserve_send_slot")


def test_the_board_gives_untouched_stretch_tasks_one_dim_line() -> None:
    state = BoardState("solution.py", "sqlite")
    console = Console(width=80, record=True)
    console.print(render_board(state))
    text = console.export_text()
    assert "F G  stretch tasks" in text and "recover_stalled_jobs" not in text
    state.tasks["F"] = TaskRow(
        "F", status=TaskStatus.FAILING, diagnosis="the reaper took a live job"
    )
    console = Console(width=80, record=True)
    console.print(render_board(state))
    text = console.export_text()
    assert "recover_stalled_jobs" in text and "(stretch)" in text


def _graded(solution: Path, letter: str, backend: str, home: Path) -> tuple[int, dict[str, object]]:
    report = home / "report.json"
    db = ["--db", POSTGRES_URL] if backend == "postgresql" else []
    completed = subprocess.run(
        [sys.executable, "-m", "pytest", str(PROJECT_ROOT / "harness" / "grading"),
         f"--solution={solution}", *db, f"--kata-task={letter}", "--kata-tier=fast",
         f"--kata-json={report}", "-q", "-p", "no:cacheprovider"],
        cwd=PROJECT_ROOT, env={**os.environ, "KATA_HOME": str(home)},
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    task: dict[str, object] = json.loads(report.read_text())["tasks"][letter]
    return completed.returncode, task


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("left", ["stub", "left-out"])
@pytest.mark.parametrize("letter", STRETCH)
def test_a_stretch_function_not_written_is_not_started_and_fails_no_run(
    letter: str, left: str, backend: str, tmp_path: Path
) -> None:
    function = FUNCTIONS[letter]
    solution = tmp_path / "attempt.py"
    if left == "stub":
        solution.write_text(PRISTINE_PATH.read_text())
        said = not_started(function)
    else:  # the reference's other functions, this one deleted
        solution.write_text(
            "from harness.worker.solutions import reference_functions\n\n"
            f"globals().update(reference_functions())\ndel {function}\n"
        )
        said = not_defined(function)
    code, task = _graded(solution, letter, backend, tmp_path)
    assert task["status"] == "not started", task
    assert task["diagnosis"] == said
    assert code == 0
