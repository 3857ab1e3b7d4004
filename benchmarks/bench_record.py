"""What the session record costs: the size of a 60-minute session, and the time a save takes.

    python benchmarks/bench_record.py                  # a 60-minute session, a save every 20 s
    python benchmarks/bench_record.py --saves 600      # a busier one

It records into a temporary kata home what ``dev`` records in an hour of work: the file growing
from the stubs to the reference solution by small edits (one save every 20 seconds: 180), after
each save the fast tier's verdicts of the five tasks (and the full tier's once a task passes), a
hint every ten saves, the interview's parts, the design notes and the end. It prints the size
of the store (after a checkpoint: the file a candidate keeps) and the cost of one save as ``dev``
pays it on its event loop (the delta and its transaction), and of one verdict. Budget: a save
under 5 ms; the hour under a few MB.
"""

from __future__ import annotations

import argparse
import random
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from harness.cli.sources import PRISTINE_PATH
from harness.progress import Progress
from harness.record.events import SessionRecorder
from harness.record.store import STORE_NAME, Store
from harness.tasks import LETTERS, TaskStatus
from harness.worker.solutions import REFERENCE_PATH


def versions(saves: int, seed: int) -> list[str]:
    """``saves`` versions of the file: the reference's lines typed in little by little, with
    an edit of an earlier line now and then (a fix)."""
    rng = random.Random(seed)
    stub = PRISTINE_PATH.read_text().splitlines(keepends=True)
    typed = REFERENCE_PATH.read_text().splitlines(keepends=True)
    out, lines = [], list(stub)
    for n in range(saves):
        goal = len(stub) + len(typed) * (n + 1) // saves
        lines += typed[len(lines) - len(stub) : goal - len(stub)]
        if rng.random() < 0.3:
            at = rng.randrange(len(lines))
            lines[at] = lines[at].rstrip("\n") + f"  # edit {n}\n"
        out.append("".join(lines))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--saves", type=int, default=180, help="saves in the hour (default 180)")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    texts = versions(args.saves, args.seed)
    with tempfile.TemporaryDirectory() as home_name:
        home = Path(home_name)
        solution = home / "solution.py"
        solution.write_text(PRISTINE_PATH.read_text())
        store = Store.in_home(home)
        recorder = SessionRecorder.open(store, solution, interview=True)
        progress = Progress.load(home / STORE_NAME, source="dev")
        recorder.phase("design")
        save_ms, save_cpu_ms, verdict_ms = [], [], []
        for n, text in enumerate(texts):
            if n == args.saves // 4:
                recorder.phase("implement")
            started, cpu = time.perf_counter(), time.process_time()
            recorder.save(text)
            save_ms.append((time.perf_counter() - started) * 1000)
            save_cpu_ms.append((time.process_time() - cpu) * 1000)
            passed = LETTERS[: 1 + 5 * n // args.saves]
            for task in LETTERS:
                status = TaskStatus.PASSING if task in passed else TaskStatus.FAILING
                started = time.perf_counter()
                progress.record_result(
                    task, status, tier="fast", backend="sqlite", diagnosis="x" * 300
                )
                verdict_ms.append((time.perf_counter() - started) * 1000)
                if task in passed:
                    progress.record_result(task, status, tier="full", backend="sqlite")
            if n % 10 == 5:
                progress.see_hint(LETTERS[n % 4], 1 + n % 3)
        recorder.phase("time is up")
        solution.write_text(texts[-1])
        recorder.close()
        with sqlite3.connect(store.path) as connection:
            connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            events = connection.execute("SELECT COUNT(*) FROM events").fetchone()[0]
            kept = connection.execute(
                "SELECT SUM(LENGTH(blob)) FROM events WHERE kind = 'save'"
            ).fetchone()[0]
        size = store.path.stat().st_size
        typed = sum(len(text) for text in texts)

    def figures(values: list[float]) -> str:
        ordered = sorted(values)
        p95 = ordered[int(len(ordered) * 0.95) - 1]
        return (
            f"median {statistics.median(values):.2f} ms, p95 {p95:.2f} ms, max {max(values):.2f} ms"
        )

    print(f"a {args.saves}-save session (one every {3600 / args.saves:.0f} s for an hour)")
    print(f"  events recorded        {events:,}")
    print(f"  store on disk          {size / 1024:,.0f} KiB (after a checkpoint)")
    print(f"  saves as deltas        {kept / 1024:,.1f} KiB for {typed / 1024:,.0f} KiB of files")
    print(f"  one save               {figures(save_ms)}   (budget 5 ms)")
    print(f"  one save, CPU time     {figures(save_cpu_ms)}   (what it costs a busy machine)")
    print(f"  one verdict            {figures(verdict_ms)}")


if __name__ == "__main__":
    main()
