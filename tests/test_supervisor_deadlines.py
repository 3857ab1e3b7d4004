"""The grading parent keeps time and takes no line of the child's report on trust.

The child runs the candidate's code, so whatever it writes may be forged: heartbeats never move
a deadline, a test's limit runs on the parent's clock from its start, only the running test can
get a result, and nothing counts after the report's last line. A skip from the solution, also
in a worker process, is a failure that says where it was raised.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness.grading.processes import claim_in_process, worker_processes
from harness.grading.scorecard import Outcome
from harness.grading.supervisor import _MARGIN, ChildRun, run_ceiling
from harness.paths import PROJECT_ROOT
from harness.sql.config import DatabaseConfig

HEARTBEAT = PROJECT_ROOT / "fixtures" / "solutions" / "hostile" / "heartbeat_busy_loop.py"
#: Task A's first graded test's limit (``graded("A")``'s default).
LIMIT = 30.0
#: Starting the interpreters, collecting, reporting: never near this on any machine we use.
SLACK = 20.0
ENVIRONMENT = {**os.environ, "COLUMNS": "400", "HYPOTHESIS_PROFILE": "fast"}
PID = 4242


def _tests(*names: str, timeout: float = 30.0) -> dict[str, object]:
    return {
        "event": "collected",
        "pid": PID,
        "tests": [{"id": n, "name": n, "task": "A", "timeout": timeout} for n in names],
    }


def _result(name: str, status: str = "pass") -> dict[str, object]:
    outcome = {"name": name, "task": "A", "status": status, "message": None, "duration": 0.1}
    return {"event": "result", "pid": PID, "id": name, "outcome": outcome}


def test_heartbeats_never_move_a_tests_deadline() -> None:
    run = ChildRun(PID)
    run.apply(_tests("t1", "t2"), now=0.0)
    run.apply({"event": "start", "pid": PID, "id": "t1"}, now=1.0)
    for second in range(5, 200, 5):
        run.apply({"event": "heartbeat", "pid": PID}, now=float(second))
        run.apply({"event": "start", "pid": PID, "id": "t1"}, now=float(second))
        if second < 1 + LIMIT + _MARGIN:
            assert run.overdue(float(second)) is None, second
    overdue = run.overdue(1.0 + LIMIT + _MARGIN + 0.5)
    assert overdue is not None and "t1 of Task A ran past its time limit" in overdue


def test_a_whole_run_has_a_ceiling_from_its_tests_limits() -> None:
    run = ChildRun(PID)
    run.apply(_tests("t1", "t2", timeout=10.0), now=0.0)
    ceiling = run_ceiling(list(run.collected.values()))
    assert ceiling > 2 * (10.0 + _MARGIN)
    now = 0.0
    for name in ("t1", "t2"):  # each test just within its limit, forever by turns
        run.apply({"event": "start", "pid": PID, "id": name}, now=now)
        now += 10.0 + _MARGIN - 1
        run.apply(_result(name), now=now)
    assert run.overdue(ceiling + 1) is not None


def test_only_the_running_test_gets_a_result_and_nothing_after_the_last_line() -> None:
    run = ChildRun(PID)
    run.apply(_tests("t1", "t2"), now=0.0)
    run.apply(_tests("t1"), now=0.5)  # collected again, by the solution: ignored
    assert list(run.collected) == ["t1", "t2"]
    run.apply({"event": "start", "pid": PID, "id": "t1"}, now=1.0)
    run.apply(_result("t2"), now=1.5)  # not running
    run.apply(_result("t1", "pass"), now=2.0)  # forged while t1 runs: the real one follows
    run.apply(_result("t1", "fail"), now=2.1)
    run.apply({"event": "complete", "pid": PID, "exitstatus": 0}, now=3.0)
    run.apply({"event": "start", "pid": PID, "id": "t2"}, now=3.1)
    run.apply(_result("t2"), now=3.2)
    assert run.results == {"t1": Outcome("t1", "A", "fail", None, 0.1, id="t1")}
    run.status = 0
    assert run.problem() is not None and "stopped early" in (run.problem() or "")


def _grade(command: list[str]) -> tuple[int, str, float]:
    started = time.monotonic()
    completed = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=ENVIRONMENT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=LIMIT + _MARGIN + SLACK + 60,
    )
    return completed.returncode, completed.stdout + completed.stderr, time.monotonic() - started


def test_a_heartbeat_writing_busy_loop_fails_within_its_limit_plus_the_margin() -> None:
    """The alarm switched off from an event-loop callback, a busy loop writing heartbeats."""
    bound = LIMIT + _MARGIN + SLACK
    by_grade = [
        sys.executable,
        "-m",
        "harness",
        "grade",
        f"--solution={HEARTBEAT}",
        "--task=A",
        "--tier=fast",
    ]
    by_pytest = [
        sys.executable,
        "-m",
        "pytest",
        str(PROJECT_ROOT / "harness" / "grading"),
        f"--solution={HEARTBEAT}",
        "--kata-task=A",
        "--kata-tier=fast",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    # Both at once (each in a database of its own): the two waits overlap.
    with ThreadPoolExecutor(max_workers=1) as pool:
        graded = pool.submit(_grade, by_grade)
        code, output, seconds = _grade(by_pytest)
        grade_code, board, grade_seconds = graded.result()
    print(f"pytest: a verdict after {seconds:.1f} s (bound {bound:g} s)")
    assert code == 1, output[-3000:]
    assert "test_empty_queue_gives_none of Task A ran past its time limit" in output, output[-3000:]
    assert seconds <= bound, f"pytest took {seconds:.1f} s"

    code, seconds = grade_code, grade_seconds
    print(f"python -m harness grade: a verdict after {seconds:.1f} s (bound {bound:g} s)")
    assert code == 1, board[-3000:]
    assert "test_empty_queue_gives_none" in board and "looks stuck" in board, board[-3000:]
    assert seconds <= bound, f"python -m harness grade took {seconds:.1f} s"


SKIPS_IN_WORKERS = """
import multiprocessing

import pytest

from harness.worker.solutions import reference_functions

globals().update(reference_functions())
_claim = reference_functions()["claim_next_job"]


async def claim_next_job(worker_id):
    if multiprocessing.parent_process() is not None:
        pytest.skip("not in a worker process")
    return await _claim(worker_id)
"""


def test_a_skip_in_a_worker_process_is_a_failure_naming_its_line(tmp_path: Path) -> None:
    solution = tmp_path / "solution.py"
    solution.write_text(SKIPS_IN_WORKERS)
    config = DatabaseConfig(url=f"sqlite:///{tmp_path / 'kata.db'}")
    with worker_processes(1) as pool:
        claims, error = pool.submit(claim_in_process, config, str(solution), "p1", 2).result(60)
    assert claims == []
    assert error == (
        "claim_next_job() raised pytest's Skipped ('not in a worker process') at "
        "solution.py:14 — a solution may not skip a graded test"
    )
