"""The grader grades itself, on both backends: the stub fails every task, the correct solutions
pass every task (and keep passing under other seeds), and every catalogue entry fails on the task
it breaks with the diagnosis that names its mistake."""

from __future__ import annotations

import pytest

from conftest import BACKENDS, POSTGRES_URL
from harness.config import PROJECT_ROOT
from harness.selftest import (
    ALTERNATIVE_PATH,
    REQUEUE_ORM_PATH,
    STRESSED_TASKS,
    STUB_PATH,
    catalogue,
    check_correct,
    check_entry,
    grade,
)
from harness.solutions import REFERENCE_PATH

URLS = {"sqlite": f"sqlite:///{PROJECT_ROOT / 'kata.db'}", "postgresql": POSTGRES_URL}
CI_SEEDS = (2, 3, 4)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest) -> str:
    return URLS[request.param]


def test_the_stub_fails_every_task_as_not_started(url: str) -> None:
    results = grade(STUB_PATH, url, tier="fast")
    for task in "ABCD":
        info = results["tasks"][task]
        assert info["passed"] == 0 and info["failed"] > 0, (task, info)
        assert info["status"] == "not started", (task, info)


@pytest.mark.parametrize(
    "solution", [REFERENCE_PATH, ALTERNATIVE_PATH, REQUEUE_ORM_PATH], ids=lambda p: p.stem
)
def test_a_correct_solution_passes_every_task(solution, url: str) -> None:
    assert check_correct(solution, url) is None


@pytest.mark.parametrize("seed", CI_SEEDS)
def test_the_reference_passes_the_concurrency_and_fault_tests_under_other_seeds(
    seed: int, url: str
) -> None:
    assert check_correct(REFERENCE_PATH, url, seed=seed, tasks=STRESSED_TASKS) is None


ENTRIES = [
    pytest.param(entry, backend, id=f"{entry.name}-{backend}")
    for entry in catalogue()
    for backend in BACKENDS
    if backend in entry.backends
]


@pytest.mark.parametrize(("entry", "backend"), ENTRIES)
def test_each_classic_mistake_fails_its_task_with_its_diagnosis(entry, backend: str) -> None:
    assert check_entry(entry, URLS[backend]) is None


def test_the_catalogue_covers_at_least_fifteen_classic_mistakes_on_every_task() -> None:
    entries = catalogue()
    assert len(entries) >= 15
    assert {entry.task for entry in entries} >= set("ABCD")
    for entry in entries:
        assert entry.summary, f"{entry.name} does not say what its mistake is"
