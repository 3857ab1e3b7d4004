"""The sleep guard: time.sleep in a solution's async code fails at its line, asyncio.sleep inside a
transaction is a violation, and everything else sleeps as usual."""

from __future__ import annotations

import asyncio
import importlib.util
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

from harness.grading.blocking import SleepGuard
from harness.scope import acting_as
from harness.sql.database import open_database
from harness.sql.transactions import transaction
from harness.world.ledger import ViolationKind
from harness.world.services import Services, use_services

SOLUTION = """\
import asyncio
import time
from time import sleep

from harness.sql.transactions import transaction


async def blocks():
    time.sleep(0.01)


async def blocks_with_the_imported_name():
    sleep(0.01)


async def sleeps_in_a_thread():
    await asyncio.to_thread(sleep, 0.01)


def sleeps_without_a_loop():
    time.sleep(0.01)


async def waits_in_a_transaction():
    async with transaction():
        await asyncio.sleep(0.01)


async def waits_outside_a_transaction():
    async with transaction():
        pass
    await asyncio.sleep(0.01)
"""


@pytest.fixture
def guarded(tmp_path: Path) -> Iterator[tuple[SleepGuard, ModuleType]]:
    """A solution file loaded after the guard was installed, as the plugin does."""
    path = tmp_path / "sleepy.py"
    path.write_text(SOLUTION)
    guard = SleepGuard(path)
    guard.install()
    try:
        spec = importlib.util.spec_from_file_location("sleepy", path.resolve())
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        yield guard, module
    finally:
        guard.uninstall()


def _line(text: str) -> int:
    return SOLUTION.splitlines().index(text) + 1


@pytest.mark.parametrize(
    ("function", "line"),
    [("blocks", "    time.sleep(0.01)"), ("blocks_with_the_imported_name", "    sleep(0.01)")],
)
async def test_time_sleep_in_the_solutions_async_code_fails_naming_its_line(
    guarded: tuple[SleepGuard, ModuleType], function: str, line: str
) -> None:
    guard, module = guarded
    with pytest.raises(pytest.fail.Exception) as failed:
        await getattr(module, function)()
    where = f"time.sleep(0.01) at sleepy.py:{_line(line)} in {function}() blocks the event loop"
    assert where in str(failed.value)
    assert [call.function for call in guard.blocking] == [function]


async def test_time_sleep_in_a_thread_is_left_alone(
    guarded: tuple[SleepGuard, ModuleType],
) -> None:
    guard, module = guarded
    await module.sleeps_in_a_thread()
    assert guard.blocking == []


def test_time_sleep_without_an_event_loop_is_left_alone(
    guarded: tuple[SleepGuard, ModuleType],
) -> None:
    guard, module = guarded
    module.sleeps_without_a_loop()
    assert guard.blocking == []


async def test_a_backoff_wait_inside_a_transaction_is_a_violation_naming_its_line(
    guarded: tuple[SleepGuard, ModuleType], tmp_path: Path
) -> None:
    _, module = guarded
    services = Services()
    async with open_database(f"sqlite:///{tmp_path}/t.db", latency=0.0):
        with use_services(services), acting_as("worker-2", job_id=7):
            await module.waits_in_a_transaction()
            await module.waits_outside_a_transaction()
            async with transaction():
                await asyncio.sleep(0.01)  # the harness's own waits are not the solution's
    [violation] = services.ledger.violations
    assert violation.kind is ViolationKind.WAIT_IN_TRANSACTION
    assert (violation.caller, violation.job_id) == ("worker-2", 7)
    line = _line("        await asyncio.sleep(0.01)")
    assert f"asyncio.sleep(0.01) at sleepy.py:{line} in waits_in_a_transaction()" in str(violation)
