"""The grader grades itself: the stub fails every task, correct solutions pass every task, and
each catalogue entry (one classic mistake each) fails on its task with its diagnosis.

    python -m harness.devtools.selftest               # the catalogue and the correct solutions
    python -m harness.devtools.selftest --stress 200  # the reference's concurrency and fault
                                                      # tests under 200 seeds: zero flakes

Each grading runs ``pytest`` in a subprocess with ``--kata-json``, exactly as a candidate's
``pytest`` would, so the self-test checks the product, not a shortcut around it.
"""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from ..paths import KATA_HOME_ENV, PROJECT_ROOT
from ..sql.config import resolve_database_url, test_postgres_url
from ..tasks import settled
from ..worker.solutions import CANDIDATE_PATH, REFERENCE_PATH

__all__ = [
    "ALTERNATIVE_PATH",
    "CATALOGUE_DIR",
    "CORRECT_DIR",
    "REQUEUE_ORM_PATH",
    "CatalogueEntry",
    "catalogue",
    "check_correct",
    "check_entry",
    "constants",
    "correct_solutions",
    "run_grader",
]

CATALOGUE_DIR = PROJECT_ROOT / "fixtures" / "solutions" / "buggy"
ALTERNATIVE_PATH = PROJECT_ROOT / "fixtures" / "solutions" / "alternative.py"
#: A third correct solution: ORM compare-and-sets, and transient errors returned to the queue.
REQUEUE_ORM_PATH = PROJECT_ROOT / "fixtures" / "solutions" / "requeue_orm.py"
#: More correct solutions, each in a style the others lack (see each file's docstring).
CORRECT_DIR = PROJECT_ROOT / "fixtures" / "solutions" / "correct"
STUB_PATH = CANDIDATE_PATH
#: The tasks whose tests involve concurrency, faults or crashes: what --stress repeats.
STRESSED_TASKS = "ACDE"


@dataclass(frozen=True)
class CatalogueEntry:
    """One classic mistake: the file, the task it breaks, and what its diagnosis must say."""

    path: Path
    task: str
    diagnosis: str
    backends: tuple[str, ...]
    summary: str
    #: The fast tier unless the mistake only shows at full size (e.g. a parameter limit).
    tier: str = "fast"

    @property
    def name(self) -> str:
        return self.path.stem


def constants(tree: ast.Module) -> dict[str, Any]:
    """A fixture's module-level constants (``EXPECTED_TASK = "A"``...), read from its syntax tree
    without running it: some fixtures end the process that imports them."""
    values: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.targets[0], ast.Name):
            try:
                values[node.targets[0].id] = ast.literal_eval(node.value)
            except ValueError:
                continue
    return values


def correct_solutions() -> list[Path]:
    """Every correct solution the self-tests grade: the reference, the two alternatives beside
    it, and each file of ``fixtures/solutions/correct``."""
    return [REFERENCE_PATH, ALTERNATIVE_PATH, REQUEUE_ORM_PATH, *sorted(CORRECT_DIR.glob("*.py"))]


def catalogue() -> list[CatalogueEntry]:
    """Every entry of ``fixtures/solutions/buggy``, read without importing it."""
    entries = []
    for path in sorted(CATALOGUE_DIR.glob("*.py")):
        tree = ast.parse(path.read_text())
        values = constants(tree)
        entries.append(
            CatalogueEntry(
                path=path,
                task=values["EXPECTED_TASK"],
                diagnosis=values["EXPECTED_DIAGNOSIS"],
                backends=tuple(values.get("EXPECTED_BACKENDS", ("sqlite", "postgresql"))),
                summary=(ast.get_docstring(tree) or "").split("\n\n")[0].replace("\n", " "),
                tier=values.get("EXPECTED_TIER", "fast"),
            )
        )
    return entries


def run_grader(
    solution: Path,
    db: str,
    *,
    tasks: str | None = None,
    tier: str = "full",
    seed: int = 1,
    timeout: float = 900,
    first_failure: bool = False,
) -> dict[str, Any]:
    """Run the grader on ``solution`` in a subprocess and return its JSON results
    (``first_failure``: stop at the first failing test, as ``pytest -x`` does). What the grading
    records goes to a progress file of its own: a self-test's file may lie outside ``fixtures/``
    (moved by the metamorphic self-test), and its verdicts are nobody's progress."""
    with tempfile.TemporaryDirectory(prefix="kata-selftest-") as tmp:
        out = Path(tmp) / "results.json"
        # --option=value: pytest reads a path after an option it does not know yet (ours come
        # from a plugin) as a test path, and would root itself outside the project.
        command = [
            sys.executable,
            "-m",
            "pytest",
            str(PROJECT_ROOT / "harness" / "grading"),
            f"--solution={solution}",
            f"--db={db}",
            f"--kata-tier={tier}",
            f"--kata-seed={seed}",
            f"--kata-json={out}",
            "-q",
            "-p",
            "no:cacheprovider",
        ]
        if tasks:
            command.append(f"--kata-task={tasks}")
        if first_failure:
            command.append("-x")
        env = {
            **os.environ,
            "HYPOTHESIS_PROFILE": os.environ.get("HYPOTHESIS_PROFILE", "thorough"),
            KATA_HOME_ENV: tmp,
        }
        completed = subprocess.run(
            command, cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=timeout, env=env
        )
        if not out.exists():
            raise RuntimeError(
                f"the grader wrote no results for {solution.name} "
                f"(exit {completed.returncode}):\n{completed.stdout[-3000:]}"
                f"\n{completed.stderr[-3000:]}"
            )
        results: dict[str, Any] = json.loads(out.read_text())
        return results


def dialect_of(db: str) -> str:
    return "sqlite" if db.startswith("sqlite") else "postgresql"


def failing_tasks(results: dict[str, Any]) -> dict[str, str | None]:
    """The tasks that failed, leaving out a stretch task the solution did not start (a correct
    solution need not write F or G: see ``harness.tasks.settled``)."""
    return {
        task: info["diagnosis"]
        for task, info in results["tasks"].items()
        if info["failed"] and not settled(task, info["status"])
    }


def check_entry(
    entry: CatalogueEntry, db: str, *, seed: int = 1, path: Path | None = None
) -> str | None:
    """None when ``entry`` fails its task with its diagnosis on ``db``; else what went wrong
    (``path``: grade this copy of the entry, saved elsewhere, instead of the entry's own file)."""
    # The first diagnosis is the verdict: the rest of the task's tests add nothing to it.
    results = run_grader(
        path or entry.path, db, tasks=entry.task, tier=entry.tier, seed=seed, first_failure=True
    )
    diagnosis = results["tasks"][entry.task]["diagnosis"]
    if diagnosis is None:
        return f"{entry.name} passed task {entry.task}: the grader missed the mistake"
    if entry.diagnosis not in diagnosis:
        return (
            f"{entry.name} failed task {entry.task}, but its first diagnosis does not say "
            f"{entry.diagnosis!r}: {diagnosis}"
        )
    return None


def check_correct(
    solution: Path, db: str, *, seed: int = 1, tasks: str | None = None, tier: str = "full"
) -> str | None:
    """None when ``solution`` passes every (selected) task on ``db``; else the diagnoses."""
    results = run_grader(solution, db, tasks=tasks, tier=tier, seed=seed)
    failing = failing_tasks(results)
    if failing:
        return f"{solution.name} (seed {seed}) failed: " + "; ".join(
            f"{task}: {diagnosis}" for task, diagnosis in failing.items()
        )
    return None


def _databases(db: str | None) -> list[str]:
    """``--db`` read as every command reads it (a URL, ``sqlite`` or ``postgresql``); both
    backends when not given, PostgreSQL at the harness's own test database."""
    if db:
        return [resolve_database_url(db)]
    return [resolve_database_url("sqlite"), test_postgres_url()]


def _report(lines: Iterable[tuple[str, str | None]]) -> int:
    failures = 0
    for label, problem in lines:
        # Flushed line by line: a long stress read through a pipe or a file shows its progress.
        click.echo(
            f"{'FAIL' if problem else 'ok  '}  {label}" + (f"\n      {problem}" if problem else "")
        )
        sys.stdout.flush()
        failures += problem is not None
    return failures


def _chosen(name: str, only: str) -> bool:
    return any(part.strip() in name for part in only.split(","))


def _seed_range(text: str) -> list[int]:
    """ "3" -> [3]; "1-5" -> [1, 2, 3, 4, 5]."""
    first, _, last = text.partition("-")
    return list(range(int(first), int(last or first) + 1))


@click.command()
@click.option(
    "--db",
    default=None,
    help="one backend: sqlite, postgresql or a URL (default: SQLite and PostgreSQL)",
)
@click.option(
    "--stress",
    type=int,
    default=0,
    help="repeat the reference's concurrency and fault tests under this many seeds instead",
)
@click.option(
    "--first-seed",
    type=int,
    default=1,
    show_default=True,
    help="the stress's first seed: split a long stress across runs or machines",
)
@click.option(
    "--seeds",
    default="1",
    show_default=True,
    help="grade every solution and entry under each of these seeds, e.g. 1-5: a verdict must "
    "not depend on the seed",
)
@click.option(
    "--repeat",
    type=int,
    default=1,
    show_default=True,
    help="grade each of them this many times per seed: a verdict must not depend on luck",
)
@click.option(
    "--only",
    default="",
    help="only the solutions and entries whose name has one of these (comma-separated)",
)
@click.option("--jobs", type=int, default=2, help="gradings run at once")
def main(
    db: str | None, stress: int, first_seed: int, seeds: str, repeat: int, only: str, jobs: int
) -> None:
    """Check the grader against the stub, the correct solutions and the catalogue."""
    started = time.monotonic()
    checks: list[tuple[str, str, Any]] = []  # (subject, label, check)
    for url in _databases(db):
        backend = dialect_of(url)
        if stress:
            for seed in range(first_seed, first_seed + stress):
                checks.append(
                    (
                        f"reference on {backend}",
                        f"reference seed {seed} on {backend}",
                        lambda u=url, s=seed: check_correct(
                            REFERENCE_PATH, u, seed=s, tasks=STRESSED_TASKS
                        ),
                    )
                )
            continue
        for seed in _seed_range(seeds):
            for run in range(1, repeat + 1):
                again = f" seed {seed}" + (f" run {run}" if repeat > 1 else "")
                for path in correct_solutions():
                    if _chosen(path.stem, only):
                        checks.append(
                            (
                                f"{path.stem} passes every task on {backend}",
                                f"{path.stem} passes every task on {backend}{again}",
                                lambda u=url, p=path, s=seed: check_correct(p, u, seed=s),
                            )
                        )
                for entry in catalogue():
                    if backend in entry.backends and _chosen(entry.name, only):
                        checks.append(
                            (
                                f"{entry.name} fails {entry.task} on {backend}",
                                f"{entry.name} fails {entry.task} on {backend}{again}",
                                lambda u=url, e=entry, s=seed: check_entry(e, u, seed=s),
                            )
                        )
    outcomes: dict[str, list[bool]] = {}
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [(subject, label, pool.submit(check)) for subject, label, check in checks]

        def results() -> Iterable[tuple[str, str | None]]:
            for subject, label, future in futures:
                try:
                    problem = future.result()
                except Exception as error:  # one grading that could not run is one failure
                    problem = f"could not grade: {type(error).__name__}: {error}"
                outcomes.setdefault(subject, []).append(problem is None)
                yield label, problem

        failures = _report(results())
    if len(checks) > len(outcomes):  # several runs each: the tally per solution or entry
        click.echo("\nper solution and entry (runs that gave the expected verdict):")
        for subject, held in outcomes.items():
            click.echo(f"  {sum(held):>3}/{len(held):<3} {subject}")
    click.echo(
        f"{len(checks) - failures}/{len(checks)} passed in {time.monotonic() - started:.0f} s"
    )
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()
