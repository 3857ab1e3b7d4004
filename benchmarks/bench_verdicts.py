"""How long a candidate waits for the grader's verdict: on the commonest wrong answers, and on a
correct solution's full grading. The grader's hot path is wrong code, so these are its budgets.

    python benchmarks/bench_verdicts.py                       # this checkout, both backends
    python benchmarks/bench_verdicts.py --tree ../old --tree .   # before and after, one run
    python benchmarks/bench_verdicts.py --db sqlite --repeat 3

For each tree and backend it times, as a candidate would see them (a fresh ``pytest`` process
each, from its start to its exit):

- ``first verdict``: ``pytest --kata-task=X -x`` on a wrong answer, until the first failure
  (budget 10 s);
- ``whole task``: ``pytest --kata-task=X`` on the same wrong answer, every test of the task;
- ``full grading``: ``pytest`` (the full tier) on the reference (budget 30 s).

The wrong answers are catalogue entries (``fixtures/solutions/buggy``) of THIS checkout, graded
by each tree's own grader. Figures are medians of ``--repeat`` runs. Run it on a quiet machine:
a figure measured while another suite runs is not a figure.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness.sql.config import test_postgres_url

ROOT = Path(__file__).resolve().parent.parent
BUGGY = ROOT / "fixtures" / "solutions" / "buggy"
POSTGRES_URL = test_postgres_url()

#: (what a candidate wrote, catalogue entry, task)
WRONG_ANSWERS = (
    ("naive claim (select, then save)", "a_select_then_update", "A"),
    ("per-row bulk create", "b_per_row_inserts", "B"),
    ("retry without waiting for retry_after", "c_ignores_retry_after", "C"),
    ("advance without compare-and-set", "d_advance_without_cas", "D"),
)
FIRST_VERDICT_BUDGET = 10.0
FULL_GRADING_BUDGET = 30.0


def grade_seconds(tree: Path, solution: Path, db: str, *options: str) -> tuple[float, int]:
    command = [
        sys.executable,
        "-m",
        "pytest",
        "harness/grading",
        f"--solution={solution}",
        f"--db={db}",
        "-q",
        "-p",
        "no:cacheprovider",
        *options,
    ]
    started = time.monotonic()
    done = subprocess.run(command, cwd=tree, capture_output=True, text=True, timeout=1800)
    return time.monotonic() - started, done.returncode


def median_seconds(repeat: int, *args: object) -> tuple[float, int]:
    runs = [grade_seconds(*args) for _ in range(repeat)]  # type: ignore[arg-type]
    return statistics.median(seconds for seconds, _ in runs), runs[-1][1]


def mark(seconds: float, budget: float | None) -> str:
    if budget is None:
        return ""
    return "  ok" if seconds <= budget else f"  OVER {budget:g} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tree", action="append", type=Path, help="a checkout to measure")
    parser.add_argument("--db", choices=["sqlite", "postgresql", "both"], default="both")
    parser.add_argument("--repeat", type=int, default=1)
    args = parser.parse_args()
    trees = [tree.resolve() for tree in (args.tree or [ROOT])]
    backends = ["sqlite", "postgresql"] if args.db == "both" else [args.db]
    urls = {"sqlite": "sqlite:///kata.db", "postgresql": POSTGRES_URL}
    for tree in trees:
        for backend in backends:
            db = urls[backend]
            print(f"\n{tree.name} on {backend} (median of {args.repeat})", flush=True)
            for label, entry, task in WRONG_ANSWERS:
                solution = BUGGY / f"{entry}.py"
                first, _ = median_seconds(
                    args.repeat, tree, solution, db, f"--kata-task={task}", "-x"
                )
                whole, status = median_seconds(
                    args.repeat, tree, solution, db, f"--kata-task={task}"
                )
                verdict = "fails" if status else "PASSES"
                print(
                    f"  {label:<40} {task}  first verdict {first:6.1f} s"
                    f"{mark(first, FIRST_VERDICT_BUDGET):<12} whole task {whole:6.1f} s"
                    f"  ({verdict})",
                    flush=True,
                )
            reference = ROOT / "fixtures" / "solutions" / "reference.py"
            full, status = median_seconds(args.repeat, tree, reference, db)
            verdict = "passes" if status == 0 else "FAILS"
            print(
                f"  {'reference, full grading':<40}    {full:6.1f} s"
                f"{mark(full, FULL_GRADING_BUDGET)}  ({verdict})",
                flush=True,
            )


if __name__ == "__main__":
    main()
