"""A worker that swallows its crash: the crash plan notes what it still does inside its life, and
the grader names the handler that caught the crash."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

from harness.exceptions import WorkerCrashed
from harness.grading.afterlife import kept_going
from harness.scope import acting_as
from harness.world.crashes import (
    CrashPlan,
    CrashPoint,
    check_before_write,
    use_crash_plan,
    worker_life,
)
from harness.world.ledger import Ledger

ZOMBIE = """\
from harness.world.crashes import check_before_write


async def process(retries):
    for _ in range(retries):
        try:
            check_before_write()
            return
        except BaseException:  # "a worker must never die"
            continue
"""


def load(tmp_path: Path, source: str) -> ModuleType:
    path = tmp_path / "solution.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location("zombie_solution", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def crash_at_first_write() -> CrashPlan:
    return CrashPlan(points=[CrashPoint.before_write(1)])


async def test_a_swallowed_crash_is_diagnosed_with_the_handler_that_caught_it(
    tmp_path: Path,
) -> None:
    module = load(tmp_path, ZOMBIE)
    plan = crash_at_first_write()
    with use_crash_plan(plan), acting_as("worker-1", job_id=7), worker_life() as life:
        await module.process(retries=2)
    assert life.killed is not None and [deed for _, deed in life.afterlife] == [
        "wrote to the database"
    ]
    diagnosis = kept_going(life, tmp_path / "solution.py", Ledger(), returned=True)
    assert diagnosis is not None
    assert diagnosis.startswith(
        "worker-1 kept going after it was killed (WorkerCrashed, a BaseException, was caught at "
        'solution.py:9: `except BaseException:  # "a worker must never die"`)'
    )
    assert "then wrote to the database, then process_job returned" in diagnosis


async def test_a_worker_that_dies_with_its_crash_is_no_zombie(tmp_path: Path) -> None:
    plan = crash_at_first_write()
    with (
        use_crash_plan(plan),
        acting_as("worker-1", job_id=7),
        worker_life() as life,
        pytest.raises(WorkerCrashed),
    ):
        check_before_write()
    assert life.killed is not None and life.afterlife == []
    assert kept_going(life, tmp_path / "solution.py", Ledger(), returned=False) is None


async def test_outside_a_life_a_write_after_a_crash_is_a_restarted_worker_s() -> None:
    # The runner restarts a crashed worker in the same task under the same name.
    with use_crash_plan(crash_at_first_write()), acting_as("worker-1", job_id=7):
        with pytest.raises(WorkerCrashed):
            check_before_write()
        check_before_write()
        with worker_life() as life:
            check_before_write()
    assert life.killed is None and life.afterlife == []


CLEANUP = """\
from harness.world.crashes import check_before_write


async def mark_failed_and_reraise():
    try:
        check_before_write()
    except BaseException:
        check_before_write()  # "record why the worker stopped"
        raise


async def release_in_finally():
    try:
        check_before_write()
    finally:
        check_before_write()  # runs on the way up; nothing was caught
"""


async def test_a_crash_caught_acted_on_and_re_raised_is_diagnosed(tmp_path: Path) -> None:
    module = load(tmp_path, CLEANUP)
    plan = crash_at_first_write()
    with (
        use_crash_plan(plan),
        acting_as("worker-1", job_id=7),
        worker_life() as life,
        pytest.raises(WorkerCrashed),
    ):
        await module.mark_failed_and_reraise()
    diagnosis = kept_going(life, tmp_path / "solution.py", Ledger(), returned=False)
    assert diagnosis is not None
    assert "was caught at solution.py:7: `except BaseException:`" in diagnosis
    assert "then wrote to the database —" in diagnosis


async def test_a_finally_on_the_way_up_is_no_catch(tmp_path: Path) -> None:
    module = load(tmp_path, CLEANUP)
    plan = crash_at_first_write()
    with (
        use_crash_plan(plan),
        acting_as("worker-1", job_id=7),
        worker_life() as life,
        pytest.raises(WorkerCrashed),
    ):
        await module.release_in_finally()
    assert life.afterlife
    assert kept_going(life, tmp_path / "solution.py", Ledger(), returned=False) is None
