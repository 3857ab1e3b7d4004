"""The grader grades itself, on both backends: the stub fails every task, the correct solutions
pass every task (and keep passing under other seeds), and every catalogue entry fails on the task
it breaks with the diagnosis that names its mistake.

Each grading is a ``pytest`` subprocess that mostly waits (on simulated latency, retry_after,
the database), so the selected ones all start at the first test of this module, a few at a time,
and each test then waits for its own: the module takes a fraction of the time in a row.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from conftest import BACKENDS, POSTGRES_URL
from harness.devtools.selftest import (
    ALTERNATIVE_PATH,
    REQUEUE_ORM_PATH,
    STRESSED_TASKS,
    STUB_PATH,
    catalogue,
    check_correct,
    check_entry,
    run_grader,
)
from harness.paths import PROJECT_ROOT
from harness.worker.solutions import REFERENCE_PATH

URLS = {"sqlite": f"sqlite:///{PROJECT_ROOT / 'kata.db'}", "postgresql": POSTGRES_URL}
CI_SEEDS = (2, 3, 4)


#: Gradings at once: they wait far more than they compute (a catalogue entry's grading uses
#: about a second of CPU), and the correct solutions' limits are generous.
GRADINGS_AT_ONCE = 4


def _grading_of(item: pytest.Item) -> tuple[Any, ...] | None:
    """What a selected test of this module grades, as a key (None for any other test)."""
    callspec = getattr(item, "callspec", None)
    if item.path != Path(__file__) or callspec is None:
        return None
    params = callspec.params
    name = item.originalname  # type: ignore[attr-defined]
    if name == "test_the_stub_fails_every_task_as_not_started":
        return ("stub", URLS[params["url"]])
    if name == "test_a_correct_solution_passes_every_task":
        return ("correct", params["solution"], URLS[params["url"]], 1, None)
    if name == "test_the_reference_passes_the_concurrency_and_fault_tests_under_other_seeds":
        return ("correct", REFERENCE_PATH, URLS[params["backend"]], params["seed"], STRESSED_TASKS)
    if name == "test_each_classic_mistake_fails_its_task_with_its_diagnosis":
        return ("entry", params["entry"], URLS[params["backend"]], params["seed"])
    return None


def _run(key: tuple[Any, ...]) -> Any:
    kind, *args = key
    if kind == "stub":
        return run_grader(STUB_PATH, args[0], tier="fast")
    if kind == "correct":
        solution, url, seed, tasks = args
        return check_correct(solution, url, seed=seed, tasks=tasks)
    entry, url, seed = args
    return check_entry(entry, url, seed=seed)


@pytest.fixture(scope="module")
def graded(request: pytest.FixtureRequest) -> Iterator[Callable[[tuple[Any, ...]], Any]]:
    """The result of a grading, by key; every selected grading is started at once."""
    pool = ThreadPoolExecutor(max_workers=GRADINGS_AT_ONCE, thread_name_prefix="selftest")
    started: dict[tuple[Any, ...], Future[Any]] = {}
    for item in request.session.items:
        key = _grading_of(item)
        if key is not None and key not in started:
            started[key] = pool.submit(_run, key)

    def result(key: tuple[Any, ...]) -> Any:
        if key not in started:
            started[key] = pool.submit(_run, key)
        return started[key].result()

    yield result
    pool.shutdown(wait=True, cancel_futures=True)


@pytest.fixture(params=BACKENDS)
def url(request: pytest.FixtureRequest) -> str:
    return request.param


def test_the_stub_fails_every_task_as_not_started(url: str, graded) -> None:
    results = graded(("stub", URLS[url]))
    for task in "ABCD":
        info = results["tasks"][task]
        assert info["passed"] == 0 and info["failed"] > 0, (task, info)
        assert info["status"] == "not started", (task, info)


@pytest.mark.parametrize(
    "solution", [REFERENCE_PATH, ALTERNATIVE_PATH, REQUEUE_ORM_PATH], ids=lambda p: p.stem
)
def test_a_correct_solution_passes_every_task(solution, url: str, graded) -> None:
    assert graded(("correct", solution, URLS[url], 1, None)) is None


# Each other seed on one backend, in turn (seed 1 is graded on both above); every seed on both
# backends is `python -m harness.devtools.selftest --stress N`.
STRESSED = [
    pytest.param(
        seed, BACKENDS[index % len(BACKENDS)], id=f"{BACKENDS[index % len(BACKENDS)]}-{seed}"
    )
    for index, seed in enumerate(CI_SEEDS)
]


@pytest.mark.parametrize(("seed", "backend"), STRESSED)
def test_the_reference_passes_the_concurrency_and_fault_tests_under_other_seeds(
    seed: int, backend: str, graded
) -> None:
    assert graded(("correct", REFERENCE_PATH, URLS[backend], seed, STRESSED_TASKS)) is None


# The suite's slice of the catalogue's matrix: each entry once, on one backend and under one of
# the seeds 1-5, taken in turn, so that every run covers every entry, both backends and every
# seed at the cost of one grading per entry. The whole matrix (every entry on both backends,
# seeds 1-5, repeated) is `python -m harness.devtools.selftest --seeds 1-5 --repeat 10`.
def _slice() -> list[Any]:
    chosen = []
    for index, entry in enumerate(catalogue()):
        backends = [backend for backend in BACKENDS if backend in entry.backends]
        if not backends:
            continue
        backend = backends[index % len(backends)]
        seed = 1 + index % 5
        chosen.append(pytest.param(entry, backend, seed, id=f"{entry.name}-{backend}-seed{seed}"))
    return chosen


ENTRIES = _slice()


@pytest.mark.parametrize(("entry", "backend", "seed"), ENTRIES)
def test_each_classic_mistake_fails_its_task_with_its_diagnosis(
    entry, backend: str, seed: int, graded
) -> None:
    assert graded(("entry", entry, URLS[backend], seed)) is None


def test_the_catalogue_covers_at_least_fifteen_classic_mistakes_on_every_task() -> None:
    entries = catalogue()
    assert len(entries) >= 15
    assert {entry.task for entry in entries} >= set("ABCD")
    for entry in entries:
        assert entry.summary, f"{entry.name} does not say what its mistake is"
