"""A verdict does not depend on where a solution is saved or how it is laid out: a fast slice of
``python -m harness.devtools.metamorphic`` on both backends (the reference and a solution that
checks for claimable jobs with ``SELECT 1 ... LIMIT 1``, at the project root, behind a path with
spaces and non-ASCII characters, and split into helpers; a catalogue entry moved to the project
root), and the transformations themselves.

The slice's gradings mostly wait, so they all start at the module's first test, a few at a time.
"""

from __future__ import annotations

import ast
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import BACKENDS, POSTGRES_URL
from harness.devtools.metamorphic import (
    LOCATIONS,
    TRANSFORMATIONS,
    cases,
    grade_correct,
    grade_entry,
    remove_leftovers,
    split_into_helpers,
    transformation,
)
from harness.devtools.selftest import CATALOGUE_DIR, CORRECT_DIR, catalogue, correct_solutions
from harness.paths import PROJECT_ROOT
from harness.tasks import FUNCTIONS
from harness.worker.solutions import REFERENCE_PATH

URLS = {"sqlite": f"sqlite:///{PROJECT_ROOT / 'kata.db'}", "postgresql": POSTGRES_URL}
EXISTENCE_CHECKS = CORRECT_DIR / "existence_checks.py"
#: A Task C mistake: Task C's tests are the ones a file at the project root used to fail.
MOVED_ENTRY = "c_key_from_address"
#: (solution, transformation) pairs of the slice, graded at the fast tier on each backend.
CORRECT_SLICE = [
    (REFERENCE_PATH, "project-root"),
    (EXISTENCE_CHECKS, "spaces-unicode"),
    (EXISTENCE_CHECKS, "split-into-helpers"),
]
GRADINGS_AT_ONCE = 3


def _slice() -> dict[tuple[str, str, str], Callable[[], str | None]]:
    entry = next(entry for entry in catalogue() if entry.name == MOVED_ENTRY)
    gradings: dict[tuple[str, str, str], Callable[[], str | None]] = {}
    for backend in BACKENDS:
        url = URLS[backend]
        for solution, change in CORRECT_SLICE:
            gradings[(solution.stem, change, backend)] = lambda s=solution, c=change, u=url: (
                grade_correct(s, transformation(c), u, tier="fast")
            )
        gradings[(entry.name, "project-root", backend)] = lambda u=url: grade_entry(
            entry, transformation("project-root"), u
        )
    return gradings


@pytest.fixture(scope="module")
def graded() -> Iterator[dict[tuple[str, str, str], Future[str | None]]]:
    pool = ThreadPoolExecutor(max_workers=GRADINGS_AT_ONCE, thread_name_prefix="metamorphic")
    try:
        yield {key: pool.submit(grading) for key, grading in _slice().items()}
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        remove_leftovers()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.mark.parametrize(
    ("solution", "change"), CORRECT_SLICE, ids=[f"{s.stem}-{c}" for s, c in CORRECT_SLICE]
)
def test_a_correct_solution_passes_wherever_it_is_saved_and_however_it_is_split(
    solution: Path, change: str, backend: str, graded
) -> None:
    assert graded[(solution.stem, change, backend)].result() is None


def test_a_classic_mistake_moved_to_the_project_root_still_fails_its_task(
    backend: str, graded
) -> None:
    assert graded[(MOVED_ENTRY, "project-root", backend)].result() is None


def test_the_slice_leaves_nothing_in_the_project_or_the_folder_above(graded) -> None:
    for future in graded.values():
        future.result()
    for folder in (PROJECT_ROOT, PROJECT_ROOT.parent, PROJECT_ROOT / "candidate"):
        assert not list(folder.glob("metamorphic_*")), folder


def test_the_matrix_covers_every_solution_under_every_transformation_and_every_entry_moved() -> (
    None
):
    matrix = {(case.subject, case.change, case.backend) for case in cases(list(URLS.values()))}
    for solution in correct_solutions():
        for change in TRANSFORMATIONS:
            for backend in URLS:
                assert (f"{solution.stem} passes", change.name, backend) in matrix
    for entry in catalogue():
        for change in LOCATIONS:
            for backend in entry.backends:
                assert (f"{entry.name} fails {entry.task}", change.name, backend) in matrix
    assert len(correct_solutions()) >= 8
    assert CATALOGUE_DIR not in {path.parent for path in correct_solutions()}


def test_splitting_into_helpers_keeps_each_task_function_and_its_signature() -> None:
    for solution in correct_solutions():
        original = ast.parse(solution.read_text())
        split = ast.parse(split_into_helpers(solution.read_text()))
        for name in FUNCTIONS.values():
            before = [n for n in original.body if getattr(n, "name", None) == name]
            after = [n for n in split.body if getattr(n, "name", None) == name]
            helper = [n for n in split.body if getattr(n, "name", None) == f"_{name}_body"]
            if not before:
                continue
            assert len(after) == 1 and len(helper) == 1, (solution.name, name)
            assert isinstance(after[0], ast.AsyncFunctionDef)
            assert ast.dump(after[0].args) == ast.dump(before[0].args)  # type: ignore[attr-defined]
            assert len(after[0].body) == 1  # the thin wrapper


def test_a_placed_file_never_replaces_an_existing_one(tmp_path: Path) -> None:
    from harness.devtools import metamorphic

    taken = tmp_path / "taken.py"
    taken.write_text("# someone else's\n")
    with pytest.raises(FileExistsError), metamorphic._own_file(taken, "# ours\n"):
        pass
    assert taken.read_text() == "# someone else's\n"
    with metamorphic._own_file(tmp_path / "ours.py", "# ours\n") as ours:
        assert ours.read_text() == "# ours\n"
    assert not ours.exists()
