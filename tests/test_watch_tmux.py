"""``python -m harness dev`` in a real terminal (tmux): the board, saves that pass, a syntax
error, an infinite loop, and ``q``."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from harness.cli.sources import PRISTINE_PATH, function_span, reference_section
from harness.paths import PROJECT_ROOT
from harness.worker.solutions import REFERENCE_PATH

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def with_claim(source: str, claim: str) -> str:
    span = function_span(source, "claim_next_job")
    assert span is not None
    lines = source.splitlines(keepends=True)
    return "".join(lines[: span[0]]) + claim + "".join(lines[span[1] :])


class Terminal:
    def __init__(self, session: str) -> None:
        self.session = session

    def screen(self) -> str:
        return subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", self.session], capture_output=True, text=True
        ).stdout

    def press(self, key: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.session, key], check=True)

    def wait_for(self, predicate: Callable[[str], bool], what: str, timeout: float = 30.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if predicate(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"the terminal never showed {what} in {timeout:g} s:\n{self.screen()}")


def task_line(screen: str, task: str) -> str:
    return next((line for line in screen.splitlines() if line.startswith(f"{task}  ")), "")


def alive(screen: str) -> bool:
    return "EXITED" not in screen and "Traceback" not in screen


@pytest.fixture
def terminal(tmp_path: Path) -> Iterator[tuple[Terminal, Path]]:
    solution = tmp_path / "solution.py"
    shutil.copyfile(PRISTINE_PATH, solution)
    session = f"kata-test-{uuid.uuid4().hex[:8]}"
    environment = f"KATA_HOME={shlex.quote(str(tmp_path / 'home'))}"
    command = (
        f"cd {shlex.quote(str(PROJECT_ROOT))} && env {environment} "
        f"{shlex.quote(sys.executable)} -m harness dev --solution "
        f"{shlex.quote(str(solution))} --test-timeout 6; echo EXITED $?; sleep 60"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "120", "-y", "40", command],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    try:
        yield Terminal(session), solution
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def test_the_board_follows_saves_survives_broken_code_and_quits(
    terminal: tuple[Terminal, Path],
) -> None:
    screen, solution = terminal
    stub = solution.read_text()
    passing = with_claim(stub, reference_section(REFERENCE_PATH.read_text(), "A"))

    first = screen.wait_for(lambda s: "not started" in task_line(s, "A"), "A not started")
    assert "h  hint" in first and "q  quit" in first

    solution.write_text(passing)
    screen.wait_for(
        lambda s: "passing" in task_line(s, "A") and "earlier version" not in task_line(s, "A"),
        "A passing",
    )

    solution.write_text(passing + "\ndef broken(:\n")
    broken = screen.wait_for(
        lambda s: "SyntaxError at solution.py:" in s, "the syntax error", timeout=10
    )
    assert alive(broken)

    solution.write_text(
        with_claim(stub, ("async def claim_next_job(worker_id):\n    while True:\n        pass\n"))
    )
    stuck = screen.wait_for(lambda s: "timed out after 6 s" in s, "the timeout")
    assert alive(stuck)
    assert "claim_next_job() looks stuck" in stuck

    # Still watching: the next save is graded as usual.
    solution.write_text(passing)
    screen.wait_for(
        lambda s: "passing" in task_line(s, "A") and "earlier version" not in task_line(s, "A"),
        "A passing again",
    )

    screen.press("q")
    screen.wait_for(lambda s: "EXITED 0" in s, "the watcher exiting", timeout=15)
