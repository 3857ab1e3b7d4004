"""Task F, the reaper, as a whole: a stub or a file without it is "not started" and fails no run,
its catalogue is big enough and says what each mistake is, ``harness solution F`` and the hints
have it, and its grading never runs the harness's own lease recovery.

That the correct solutions pass F and every F entry fails F with its diagnosis is
``test_grader_selftest``'s (every task of each correct solution, each entry in turn)."""

from __future__ import annotations

import ast
import re

import pytest

from harness.cli.hints import LEVELS, hint
from harness.cli.sources import PRISTINE_PATH, reference_section
from harness.devtools.selftest import catalogue
from harness.grading.stalled import ROUND_TRIPS, STALLED_AT_ONCE
from harness.paths import PROJECT_ROOT
from harness.worker.solutions import REFERENCE_PATH

F_GRADING = [
    PROJECT_ROOT / "harness" / "grading" / name
    for name in ("test_task_f_reaper.py", "reaper_race.py", "stalled.py")
]

#: A solution that defines A to D (the reference's) and no reaper at all.


def test_the_catalogue_has_at_least_eight_mistakes_of_the_reaper() -> None:
    entries = [entry for entry in catalogue() if entry.task == "F"]
    assert len(entries) >= 8
    for entry in entries:
        assert entry.name.startswith("f_"), entry.name
        assert entry.summary, f"{entry.name} does not say what its mistake is"
        assert set(entry.backends) <= {"sqlite", "postgresql"}


def test_harness_solution_f_shows_the_reference_reaper_alone() -> None:
    section = reference_section(REFERENCE_PATH.read_text(), "F")
    assert "async def recover_stalled_jobs(" in section
    assert "def claim_next_job" not in section and "def process_job" not in section


def test_the_reaper_has_every_level_of_hint() -> None:
    texts = [hint("F", level).text for level in range(1, LEVELS + 1)]
    assert len(set(texts)) == LEVELS
    assert "recover_stalled_jobs" in texts[-1]
    with pytest.raises(KeyError, match="F"):
        hint("E", 1)


def test_the_reapers_grading_never_runs_the_harness_lease_recovery() -> None:
    """Every recovery F's tests see must be the candidate's: its modules start no runner and
    never send the harness's own recovery."""
    for path in F_GRADING:
        tree = ast.parse(path.read_text())
        names = {
            alias.name
            for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom)
            for alias in node.names
        }
        modules = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
        assert not names & {"Runner", "RECOVER_EXPIRED", "RECOVER_COUNTING"}, path.name
        assert not any(module.endswith(("runner", "queue")) for module in modules), path.name
        assert "expire_claim" not in path.read_text(), path.name


def test_the_reapers_budget_is_the_documents_budget() -> None:
    said = f"{STALLED_AT_ONCE['full']:,} stalled jobs within {ROUND_TRIPS} round trips"
    documents = {
        "README.md": (PROJECT_ROOT / "README.md").read_text(),
        "CONTRACT.md": (PROJECT_ROOT / "CONTRACT.md").read_text(),
        "the stub": PRISTINE_PATH.read_text(),
    }
    for name, text in documents.items():
        assert said in re.sub(r"\s+", " ", re.sub(r"[*`]", "", text)), name
