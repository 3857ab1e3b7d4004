"""scenarios in a real terminal: `python -m scenarios N` in tmux draws the live board (rich's Live
on a tty), then asks its question and grades the answer typed at the prompt: drill 1, and drill 4
(whose workers die)."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from harness.paths import PROJECT_ROOT

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

SECTIONS = (
    "Queue depth",
    "Throughput",
    "Latency per call",
    "Connection pool & transactions",
    "Workers (20",
    "External APIs (ledger) & emails",
)


class Tmux:
    """One tmux server of our own (its own socket), so that nothing else is touched."""

    def __init__(self) -> None:
        self.socket = f"kata-test-{secrets.token_hex(4)}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True
        ).stdout

    def pane(self) -> str:
        return self("capture-pane", "-p", "-t", "drill")

    def wait_for(self, condition: str, timeout: float) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            text = self.pane()
            if condition in text:
                return text
            time.sleep(0.2)
        raise AssertionError(
            f"{condition!r} did not appear in {timeout} s; the pane:\n{self.pane()}"
        )

    def wait_until_exited(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self("display-message", "-p", "-t", "drill", "#{pane_dead}").strip() == "1":
                return
            time.sleep(0.1)
        raise AssertionError(f"the drill did not exit in {timeout} s; the pane:\n{self.pane()}")


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    server = Tmux()
    try:
        yield server
    finally:
        subprocess.run(["tmux", "-L", server.socket, "kill-server"], capture_output=True)


#: (incident, its right answer, a change, what the debrief reads in it)
DRILLS = (
    (
        1,
        "B",
        "claim with SKIP LOCKED, send outside the transaction",
        "send the email outside any transaction",
    ),
    (
        4,
        "D",
        "count each lease expiry in attempts and fail the job after MAX_ATTEMPTS",
        "count each expired claim (attempts + 1) in the reaper",
    ),
)


@pytest.mark.parametrize(("number", "right", "change", "read"), DRILLS, ids=lambda v: str(v))
def test_the_board_is_drawn_live_in_a_terminal_then_the_answer_is_graded(
    tmux: Tmux, tmp_path: Path, number: int, right: str, change: str, read: str
) -> None:
    answers = tmp_path / "answers.jsonl"
    command = (
        f"{sys.executable} -m scenarios {number} --duration 5 --jobs 300 --answers-file {answers}"
    )
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}  # the zero-setup SQLite
    subprocess.run(
        [
            "tmux",
            "-L",
            tmux.socket,
            "new-session",
            "-d",
            "-s",
            "drill",
            "-x",
            "140",
            "-y",
            "45",
            "-c",
            str(PROJECT_ROOT),
            command,
        ],
        check=True,
        env=env,
    )
    tmux("set-option", "-t", "drill", "remain-on-exit", "on")

    mid_run = tmux.wait_for("External APIs", timeout=15)
    assert "Totals re-counted" not in mid_run, "the run was over before the board was captured"
    for section in (f"INCIDENT {number}", *SECTIONS):
        assert section in mid_run, f"{section!r} missing from the board:\n{mid_run}"
    assert "production code" in mid_run and "s / 5 s" in mid_run

    question = tmux.wait_for("Your answer", timeout=30)
    assert "Totals re-counted from the database" in question
    tmux("send-keys", "-t", "drill", right, "Enter")
    tmux.wait_for("What would you change?", timeout=10)
    tmux("send-keys", "-t", "drill", change, "Enter")
    assert f"Right: {right}." in tmux.wait_for("Right", timeout=10)
    tmux.wait_until_exited(timeout=10)
    assert '"correct": true' in answers.read_text()
    debrief = tmux.pane().split("Debrief")[-1]
    # The debrief reads the change, quotes this run, and says what to run next.
    assert read in debrief
    assert "Evidence from this run" in debrief
    for step in ("--explain", "--fixed", "--replay"):
        assert f"scenarios {number} {step}" in debrief
