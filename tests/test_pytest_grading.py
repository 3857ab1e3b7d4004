"""Plain ``pytest``, the grader the README names, behaves as a pytest user expects: both forms of
``--solution``, tasks graded A to E, the scorecard last with a re-run command that repeats the
options given, one word for a task nobody started, and its verdicts recorded as progress."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import BACKENDS, POSTGRES_URL
from harness.cli import main as harness_main
from harness.cli.sources import PRISTINE_PATH
from harness.paths import PROJECT_ROOT
from harness.progress import Progress
from harness.tasks import LETTERS
from harness.worker.solutions import REFERENCE_PATH


def grade(
    *args: str, home: Path, timeout: float = 120, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """``pytest ARGS`` from the project root, as a candidate types it, with its own progress."""
    env = {**os.environ, "KATA_HOME": str(home), "COLUMNS": "80", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "pytest", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def db_args(backend: str) -> list[str]:
    return ["--db", POSTGRES_URL] if backend == "postgresql" else []


@pytest.fixture
def stub(tmp_path: Path) -> Path:
    """An untouched solution file, outside the project."""
    path = tmp_path / "attempt.py"
    shutil.copy(PRISTINE_PATH, path)
    return path


@pytest.mark.parametrize("backend", BACKENDS)
def test_solution_with_a_space_inside_the_project_grades_that_file_on_the_named_backend(
    backend: str, tmp_path: Path
) -> None:
    # --db takes a backend's name, as every command does (DATABASE_URL may say where it is).
    environment = {"DATABASE_URL": POSTGRES_URL} if backend == "postgresql" else {}
    result = grade(
        "--solution",
        str(REFERENCE_PATH.relative_to(PROJECT_ROOT)),
        "--kata-task",
        "A",
        "--kata-tier",
        "fast",
        "--db",
        backend,
        "--kata-json",
        str(tmp_path / "r.json"),
        home=tmp_path,
        env=environment,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = json.loads((tmp_path / "r.json").read_text())
    assert (report["solution"], report["backend"], report["status"]) == (
        "reference.py",
        backend,
        "pass",
    )


def test_solution_with_a_space_outside_the_project_says_what_to_type(
    stub: Path, tmp_path: Path
) -> None:
    result = grade("--solution", str(stub), "--kata-task", "A", home=tmp_path)
    assert result.returncode == pytest.ExitCode.USAGE_ERROR
    assert f"pytest --solution={stub} --kata-task A" in result.stderr
    assert "unrecognized arguments" not in result.stderr


def test_solution_with_an_equals_sign_outside_the_project_grades_it(
    stub: Path, tmp_path: Path
) -> None:
    result = grade(
        f"--solution={stub}",
        "--kata-task",
        "A",
        "--kata-tier",
        "fast",
        "--kata-json",
        str(tmp_path / "r.json"),
        home=tmp_path,
    )
    assert result.returncode == pytest.ExitCode.TESTS_FAILED, result.stdout + result.stderr
    assert json.loads((tmp_path / "r.json").read_text())["solution"] == "attempt.py"


def test_tasks_are_collected_in_order_a_to_e(tmp_path: Path) -> None:
    result = grade("--collect-only", "-q", home=tmp_path)
    files = [line.split("::")[0] for line in result.stdout.splitlines() if "::" in line]
    order = list(dict.fromkeys(Path(f).name for f in files))
    # The write-path matrix holds tests of C and of D: its C cells follow C's own tests, and its
    # D cells D's (files listed here by their first test).
    assert order == [
        "test_task_a_claim.py",
        "test_task_b_bulk.py",
        "test_task_c_retries.py",
        "test_write_paths.py",
        "test_task_d_idempotency.py",
        "test_end_to_end.py",
        "test_task_f_reaper.py",
        "test_task_g_rate.py",
    ]
    tasks = [line.split("::")[-1] for line in result.stdout.splitlines() if "::" in line]
    c_cells = [n for n, t in enumerate(tasks) if t.startswith("test_send_email_step_never")]
    d_first = next(n for n, f in enumerate(files) if f.endswith("test_task_d_idempotency.py"))
    assert c_cells and max(c_cells) < d_first


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stub_is_not_started_on_every_task_and_the_scorecard_comes_last(
    backend: str, stub: Path, tmp_path: Path
) -> None:
    result = grade(
        f"--solution={stub}",
        "--kata-tier",
        "fast",
        *db_args(backend),
        "--kata-json",
        str(tmp_path / "r.json"),
        home=tmp_path,
    )
    report = json.loads((tmp_path / "r.json").read_text())
    # Every task, the stretch ones too: "not started", and the run fails for A to E alone.
    assert {task: t["status"] for task, t in report["tasks"].items()} == dict.fromkeys(
        LETTERS, "not started"
    )
    # pytest's summary ("N failed in ...") first, then the scorecard, then the command to re-run
    # the same grading, whole, even at 80 columns.
    lines = result.stdout.rstrip().splitlines()
    summary = max(i for i, line in enumerate(lines) if re.search(r" failed.* in [0-9.]+s", line))
    table = max(i for i, line in enumerate(lines) if "claim_next_job" in line)
    assert summary < table
    db = f" --db {POSTGRES_URL}" if backend == "postgresql" else ""
    assert lines[-1] == f"pytest --solution={stub}{db} --kata-tier fast --kata-seed 1"


def test_a_full_pass_with_pytest_is_progress_that_unlocks_the_solution(tmp_path: Path) -> None:
    attempt = tmp_path / "attempt.py"
    shutil.copy(REFERENCE_PATH, attempt)  # the candidate's own file, that happens to be right
    home = tmp_path / "home"
    result = grade(f"--solution={attempt}", "--kata-task", "B", home=home, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:]
    progress = Progress.load(home / "progress.json")
    assert progress.passed("B") and not progress.passed("A")
    shown = CliRunner().invoke(harness_main, ["solution", "B"], env={"KATA_HOME": str(home)})
    assert shown.exit_code == 0, shown.output
    assert "async def create_campaign_jobs" in shown.output


def test_a_narrowed_or_harness_graded_run_is_not_progress(tmp_path: Path) -> None:
    attempt = tmp_path / "attempt.py"
    shutil.copy(REFERENCE_PATH, attempt)
    home = tmp_path / "home"
    narrowed = grade(f"--solution={attempt}", "--kata-task", "A", "-k", "empty_queue", home=home)
    assert narrowed.returncode == 0, narrowed.stdout[-3000:]
    theirs = grade(f"--solution={REFERENCE_PATH}", "--kata-task", "A", home=home)
    assert theirs.returncode == 0, theirs.stdout[-3000:]
    assert not Progress.load(home / "progress.json").passed("A")
