"""Measure how long each fast-tier test takes on the reference, for balanced watch-mode shares.

    python -m harness.devtools.durations [--runs 3]

Grades the reference with the fast tier on the SQLite default ``--runs`` times, one run after
another, and writes each test's median duration to ``harness/grading/durations.json`` (read by
``harness.grading.shares``). Run it on a quiet machine after adding or changing a fast-tier test;
the suite fails while a fast-tier test is missing from the file.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from collections import defaultdict
from pathlib import Path

from ..grading.shares import DURATIONS_PATH
from ..paths import PROJECT_ROOT
from ..worker.solutions import REFERENCE_PATH

__all__ = ["main", "measure"]


def measure(runs: int) -> dict[str, float]:
    """Each fast-tier test's name -> its median duration in seconds over ``runs`` gradings."""
    seen: dict[str, list[float]] = defaultdict(list)
    with tempfile.TemporaryDirectory(prefix="kata-durations-") as work:
        report = Path(work) / "report.json"
        for _ in range(runs):
            command = [
                sys.executable,
                "-m",
                "pytest",
                str(PROJECT_ROOT / "harness" / "grading"),
                "--solution",
                str(REFERENCE_PATH),
                "--kata-tier",
                "fast",
                "--kata-json",
                str(report),
                "--db",
                "sqlite:///kata.db",
                "-q",
                "-p",
                "no:cacheprovider",
            ]
            done = subprocess.run(command, cwd=work, capture_output=True, text=True)
            if done.returncode != 0:
                raise SystemExit(f"the reference did not pass the fast tier:\n{done.stdout}")
            for test in json.loads(report.read_text())["tests"]:
                seen[test["name"]].append(test["duration"])
    return {name: round(statistics.median(times), 3) for name, times in sorted(seen.items())}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    options = parser.parse_args()
    tests = measure(options.runs)
    DURATIONS_PATH.write_text(
        json.dumps(
            {
                "measured": "the reference, fast tier, SQLite default, median of "
                f"{options.runs} runs (python -m harness.devtools.durations)",
                "tests": tests,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"{len(tests)} tests, {sum(tests.values()):.2f} s in all -> {DURATIONS_PATH.name}")


if __name__ == "__main__":
    main()
