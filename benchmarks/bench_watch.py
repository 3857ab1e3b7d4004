"""How fast does ``python -m harness dev`` answer a save, and what does it cost when idle?

    .venv/bin/python benchmarks/bench_watch.py [--saves 10] [--idle 30] [--scenario a|all]

Runs the watcher in a real terminal (tmux, 120x40) and saves the file ``--saves`` times.

- ``--scenario a`` (the first half hour of an interview): the stub with Task A solved, saves
  alternating a correct claim_next_job and one with a classic mistake (newest first), so that
  every save changes what the board says about A.
- ``--scenario all`` (the last half hour): every task solved (the reference's sections), saves
  alternating a comment inside process_job, so that every save re-grades the whole fast tier
  with Task D first.

For each save it measures, from just before the write:

- ``results``: until the watcher has every verdict of the fast tier (its KATA_TRACE log);
- ``screen``: until the terminal shows the edited task's new verdict (tmux capture-pane, polled).

Then it waits for the pipeline to finish and measures the CPU time (utime + stime from
/proc/<pid>/stat) of the watcher and its fork server over ``--idle`` seconds of no saves.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from harness.cli.sources import function_span, reference_section  # noqa: E402

SESSION = "kata-bench-watch"
NEWEST_FIRST = ROOT / "fixtures" / "solutions" / "buggy" / "a_newest_first.py"


def with_function(source: str, name: str, new: str) -> str:
    start, end = function_span(source, name) or (0, 0)
    lines = source.splitlines(keepends=True)
    return "".join(lines[:start]) + new + "".join(lines[end:])


def variants(scenario: str) -> tuple[str, str, str, str, str]:
    """(first version, then alternately version 1 and version 2, with the task whose line to
    read and the status each should show)."""
    stub = (ROOT / "harness" / "cli" / "pristine_solution.py").read_text()
    reference = (ROOT / "fixtures" / "solutions" / "reference.py").read_text()
    if scenario == "a":
        good = with_function(stub, "claim_next_job", reference_section(reference, "A"))
        bad = good.replace("ORDER BY id", "ORDER BY id DESC")
        assert bad != good
        return "A", bad, good, "passing", bad
    header, _ = reference.split("# --- Task A", 1)
    solved = header.replace(header.split("from __future__ import annotations")[0], "")
    solved = '"""Every task solved."""\n\n' + solved
    for task, name in (
        ("A", "claim_next_job"),
        ("B", "create_campaign_jobs"),
        ("C", "send_email_step"),
        ("D", "process_job"),
    ):
        solved += "\n\n" + reference_section(reference, task)
        assert name in solved
    other = solved.replace(
        "    fresh = await Job.filter(id=job.id).first()",
        "    # the job object may be stale: read it again\n"
        "    fresh = await Job.filter(id=job.id).first()",
    )
    assert other != solved
    return "D", solved, other, "passing", solved


def capture() -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", SESSION], capture_output=True, text=True
    ).stdout


def status_of(screen: str, task: str) -> str | None:
    """The task's status on the board, "stale" while it is about an earlier version."""
    for line in screen.splitlines():
        if line.startswith(f"{task}  "):
            if "(earlier version)" in line:
                return "stale"
            for status in ("passing", "failing", "not started"):
                if status in line:
                    return status
    return None


def trace_events(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def wait_for(predicate, timeout: float, step: float = 0.02):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return None


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--saves", type=int, default=10)
    parser.add_argument("--idle", type=float, default=30.0)
    parser.add_argument(
        "--pause", type=float, default=1.0, help="seconds between a save's answer and the next save"
    )
    parser.add_argument("--scenario", choices=["a", "all"], default="a")
    options = parser.parse_args()
    task, first, one, one_shows, two = variants(options.scenario)
    two_shows = "failing" if options.scenario == "a" else "passing"
    work = Path(tempfile.mkdtemp(prefix="kata-bench-"))
    solution, trace = work / "solution.py", work / "trace.jsonl"
    solution.write_text(first)
    env = f"KATA_HOME={work / 'home'} KATA_TRACE={trace}"
    command = f"cd {ROOT} && exec env {env} {sys.executable} -m harness dev --solution {solution}"
    subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", SESSION, "-x", "120", "-y", "40", command], check=True
    )
    try:
        pane = int(
            subprocess.run(
                ["tmux", "display", "-p", "-t", SESSION, "#{pane_pid}"],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        if not wait_for(lambda: status_of(capture(), task) == two_shows, 120):
            raise SystemExit("the board never showed the first result:\n" + capture())
        wait_for(
            lambda: (
                any(e["event"] == "results" and e["tier"] == "fast" for e in trace_events(trace))
                or None
            ),
            60,
        )
        screen_times, result_times = [], []
        for index in range(options.saves):
            source, expected = (one, one_shows) if index % 2 == 0 else (two, two_shows)
            seen = len(trace_events(trace))
            t0 = time.time()
            solution.write_text(source)
            if options.scenario == "all":  # the same verdict again: wait for the new one
                wait_for(lambda: status_of(capture(), task) == "stale", 10, step=0.005)
            shown = wait_for(lambda expected=expected: status_of(capture(), task) == expected, 90)
            t_screen = time.time() - t0
            if not shown:
                raise SystemExit(f"save {index + 1}: the board never showed {expected}")
            result = wait_for(
                lambda seen=seen: next(
                    (
                        e
                        for e in trace_events(trace)[seen:]
                        if e["event"] == "results" and e["tier"] == "fast"
                    ),
                    None,
                ),
                120,
            )
            t_result = result["t"] - t0 if result else float("nan")
            screen_times.append(t_screen)
            result_times.append(t_result)
            print(
                f"save {index + 1:2}: {task} {expected:8}  results {t_result:5.2f} s  "
                f"on screen {t_screen:5.2f} s",
                flush=True,
            )
            time.sleep(options.pause)
        print(
            f"median: results {statistics.median(result_times):.2f} s, on screen "
            f"{statistics.median(screen_times):.2f} s (min {min(screen_times):.2f}, "
            f"max {max(screen_times):.2f})"
        )

        # Idle: let the last pipeline (fast, then full) finish, then measure.
        def settled() -> bool:
            events = trace_events(trace)
            starts = sum(1 for e in events if e["event"] == "run-start")
            ends = sum(1 for e in events if e["event"] == "run-end")
            return starts == ends

        wait_for(settled, 120, step=0.5)
        time.sleep(2)
        processes = [pane, *children(pane)]
        before = {pid: cpu_seconds(pid) for pid in processes}
        time.sleep(options.idle)
        used = {pid: cpu_seconds(pid) - before[pid] for pid in processes}
        total = sum(used.values())
        print(
            f"idle {options.idle:g} s: {total:.2f} s of CPU "
            f"({100 * total / options.idle:.2f} % of one core) across {len(processes)} "
            f"processes (watcher {used[pane]:.2f} s)"
        )
        subprocess.run(["tmux", "send-keys", "-t", SESSION, "q"])
        time.sleep(1)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", SESSION], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
