"""The kata home's store: progress and the session record, written by several processes at once
without losing a write; saves kept as deltas that replay exactly; the record append-only."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from harness.cli.sources import PRISTINE_PATH
from harness.paths import PROJECT_ROOT
from harness.progress import Progress
from harness.record.delta import apply, delta
from harness.record.events import SessionRecorder
from harness.record.history import load, sessions
from harness.record.store import STORE_NAME, Store
from harness.tasks import LETTERS


def _events(home: Path, sql: str = "1", *args: object) -> list[sqlite3.Row]:
    with Store.in_home(home).read() as connection:
        return connection.execute(f"SELECT * FROM events WHERE {sql} ORDER BY id", args).fetchall()


def _wait(condition: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"never saw {what} in {timeout:g} s")


def test_a_save_replays_exactly_from_its_delta() -> None:
    old = PRISTINE_PATH.read_text()
    new = old.replace("raise NotImplementedError", "return None", 1) + "\n# done\nno newline"
    change = delta(old, new)
    assert apply(old, change.blob) == new
    assert len(change.blob) < 200  # a one-line change of a whole file keeps a few bytes
    small = delta("a\nb\nc\n", "a\nB\nc\nd")
    assert (small.added, small.removed) == (2, 1)
    assert apply("a\nb\nc\n", small.blob) == "a\nB\nc\nd"


def test_a_session_gives_back_every_version_it_saved(tmp_path: Path) -> None:
    solution = tmp_path / "solution.py"
    solution.write_text("a\nb\n")
    recorder = SessionRecorder.open(Store.in_home(tmp_path), solution)
    for text in ("a\nB\n", "a\nB\nc", "a\nB\nc"):  # the last one is no change
        recorder.save(text)
    solution.write_text("z\n")
    recorder.close()
    log = load(Store.in_home(tmp_path), recorder.id)
    assert [text for _, text in log.versions()] == ["a\nb\n", "a\nB\n", "a\nB\nc", "z\n"]
    [info] = sessions(Store.in_home(tmp_path))
    assert (info.saves, info.ended is not None, info.running) == (3, True, False)


def test_the_record_refuses_to_change_or_delete_an_event(tmp_path: Path) -> None:
    Progress.load(tmp_path / STORE_NAME).see_hint("A", 1)
    store = Store.in_home(tmp_path)
    for statement in ("UPDATE events SET kind = 'x'", "DELETE FROM events"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"), store.write() as c:
            c.execute(statement)
    assert len(_events(tmp_path)) == 1


def test_progress_json_is_migrated_once_and_set_aside(tmp_path: Path) -> None:
    legacy = {
        "version": 1,
        "tasks": {"A": {"first_passed": "2025-01-01T10:00:00+00:00", "backends": ["sqlite"],
                        "last_status": "passing", "last_graded": "2025-01-01T10:00:00+00:00",
                        "hint_level": 2}},
        "interview": None,
    }  # fmt: skip
    (tmp_path / "progress.json").write_text(json.dumps(legacy))
    progress = Progress.load(tmp_path / "progress.json")
    assert progress.passed("A") and progress.hint_level("A") == 2
    assert progress.tasks["A"].backends == ["sqlite"]
    assert not (tmp_path / "progress.json").exists()
    assert (tmp_path / "progress.json.migrated").exists()
    # Written again by an old version, it is not imported a second time.
    (tmp_path / "progress.json").write_text(json.dumps({"tasks": {"B": {"hint_level": 3}}}))
    assert Progress.load(tmp_path / STORE_NAME).hint_level("B") == 0


_HAMMER = """
import sys
from pathlib import Path
from harness.progress import Progress
progress = Progress.load(Path(sys.argv[1]), source="hammer")
worker = int(sys.argv[2])
for i in range(40):
    progress.see_hint("ABCD"[worker], i % 4 + 1)
    progress.record_result("ABCD"[(worker + 1) % 4], "failing", tier="fast", backend="sqlite",
                           diagnosis=f"worker {worker} try {i}")
progress.record_result("E", "passing", tier="full", backend=f"backend-{worker}")
"""


def test_four_processes_writing_at_once_lose_no_write(tmp_path: Path) -> None:
    store = tmp_path / STORE_NAME
    Progress.load(store).see_hint("A", 0)  # the store exists before the race
    workers = [
        subprocess.Popen([sys.executable, "-c", _HAMMER, str(store), str(n)], cwd=PROJECT_ROOT)
        for n in range(4)
    ]
    assert [worker.wait(timeout=120) for worker in workers] == [0, 0, 0, 0]
    progress = Progress.load(store)
    assert [progress.hint_level(task) for task in "ABCD"] == [4, 4, 4, 4]
    assert sorted(progress.tasks["E"].backends) == [f"backend-{n}" for n in range(4)]
    assert len(_events(tmp_path, "source = 'hammer'")) == 4 * 81


def _dev(home: Path, solution: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "harness", "dev", "--solution", str(solution)],
            cwd=PROJECT_ROOT,
            env={**os.environ, "KATA_HOME": str(home)},
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def _harness(home: Path, *args: str, check: bool = True) -> None:
    subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "KATA_HOME": str(home)},
        check=check,
        capture_output=True,
        timeout=300,
    )


def test_hint_pytest_and_a_second_dev_window_during_dev_lose_no_write(tmp_path: Path) -> None:
    home, solution = tmp_path / "home", tmp_path / "solution.py"
    solution.write_text(PRISTINE_PATH.read_text())
    windows = [_dev(home, solution, tmp_path / f"dev-{n}.log") for n in range(2)]
    try:
        _wait(lambda: len(_events(home, "kind = 'verdict' AND source = 'dev'")) >= 10, "2 boards")
        _harness(home, "-m", "harness", "hint", "D")
        _harness(home, "-m", "harness", "hint", "A")
        _harness(home, "-m", "harness", "hint", "A")
        _harness(home, "-m", "pytest", "harness/grading", "--solution", str(solution),
                 "--kata-tier", "fast", "-q", "-p", "no:cacheprovider", check=False)  # fmt: skip
        _harness(home, "-c", "from harness.progress import Progress; from harness.paths import "
                 "kata_home; Progress.load(kata_home() / 'kata.sqlite3').record_result("
                 "'B', 'passing', tier='full', backend='sqlite')")  # fmt: skip
        before = len(_events(home, "kind = 'verdict' AND source = 'dev'"))
        solution.write_text(solution.read_text() + "\n# a save both windows regrade\n")
        _wait(
            lambda: len(_events(home, "kind = 'verdict' AND source = 'dev'")) >= before + 10,
            "both windows' regrades",
        )
    finally:
        for window in windows:
            window.send_signal(signal.SIGTERM)
        for window in windows:
            window.wait(timeout=30)
    progress = Progress.load(home / STORE_NAME)
    assert (progress.hint_level("A"), progress.hint_level("D")) == (2, 1)
    assert progress.passed("B")  # dev's regrades since changed its status, never its first pass
    dev_sessions = [s.id for s in sessions(Store.in_home(home)) if s.kind == "dev"]
    assert len(dev_sessions) == 2
    # pytest records a verdict for every task it graded, the stretch tasks' "not started" too.
    for kind, source, count in (("hint", "hint", 3), ("verdict", "pytest", len(LETTERS))):
        rows = _events(home, "kind = ? AND source = ?", kind, source)
        assert len(rows) == count
        assert {row["session"] for row in rows} <= set(dev_sessions)  # the dev session's
    assert len(_events(home, "kind = 'save'")) == 2  # one per window
    assert len(_events(home, "kind = 'end'")) == 2
