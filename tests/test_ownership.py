"""Whose code a frame is, decided by the solution's own file: a solution saved in the project
root (beside the harness and the virtual environment) owns its file and nothing else."""

from __future__ import annotations

import sysconfig
from pathlib import Path

import pytest

from harness import ownership
from harness.paths import HARNESS_DIR, PROJECT_ROOT


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ownership, "_solutions", set())
    monkeypatch.setattr(ownership, "_known", {})


def test_a_solution_in_the_project_root_owns_only_its_file(registry: None) -> None:
    solution = PROJECT_ROOT / "attempt2.py"
    ownership.register_solution(solution)
    assert ownership.is_solution_file(str(solution))
    for other in (
        HARNESS_DIR / "grading" / "kit.py",
        PROJECT_ROOT / "conftest.py",
        Path(pytest.__file__),
        PROJECT_ROOT / "candidate" / "solution.py",
    ):
        assert not ownership.is_solution_file(str(other)), other


def test_a_symlinked_solution_is_its_target_too(registry: None, tmp_path: Path) -> None:
    target = tmp_path / "my attempts" / "ünïcode" / "solution v2.py"
    target.parent.mkdir(parents=True)
    target.write_text("")
    link = tmp_path / "solution.py"
    link.symlink_to(target)
    ownership.register_solution(link)
    assert ownership.is_solution_file(str(link))
    assert ownership.is_solution_file(str(target))  # the loader compiles the resolved path
    assert not ownership.is_solution_file(str(tmp_path / "helper.py"))


def test_where_no_solution_is_on_the_stack_the_programs_own_code_is_what_is_not_the_harness(
    registry: None,
) -> None:
    """A drill runs production's code: its frames are the program's, solution loaded or not."""
    ownership.register_solution(PROJECT_ROOT / "attempt2.py")
    assert ownership.is_program_code(str(PROJECT_ROOT / "scenarios" / "workflow.py"))
    assert not ownership.is_program_code(str(HARNESS_DIR / "sql" / "database.py"))
    assert not ownership.is_program_code(str(Path(pytest.__file__)))
    # The `pytest` command is an installed package's script, not a program of the kata: the
    # grader's own statements made under it are "the harness", never "pytest:8".
    script = Path(sysconfig.get_paths()["scripts"]) / "pytest"
    assert not ownership.is_program_code(str(script))
    assert not ownership.is_program_code("<string>")


def test_a_line_is_named_from_the_solution_first_then_from_other_program_code(
    registry: None, tmp_path: Path
) -> None:
    solution = tmp_path / "solution.py"
    solution.write_text("def call(f):\n    return f()\n")
    namespace: dict[str, object] = {}
    exec(compile(solution.read_text(), str(solution), "exec"), namespace)
    call = namespace["call"]
    assert callable(call)
    # No solution registered: this test's own line is the program's.
    assert (ownership.code_site(1) or "").startswith("test_ownership.py:")
    ownership.register_solution(solution)
    # The solution's frame wins over the test that called it.
    assert (call(lambda: ownership.code_site(2)) or "").startswith("solution.py:2 in call()")
    # With no solution frame on the stack, the program's own code is named again.
    assert (ownership.code_site(1) or "").startswith("test_ownership.py:")
