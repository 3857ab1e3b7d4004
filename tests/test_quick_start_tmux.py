"""The README's first command, ``pytest`` on the untouched stubs, in a real 80-column terminal:
the last screen is the scorecard, with the next hint and the re-run command whole."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from harness.cli.sources import PRISTINE_PATH
from harness.paths import PROJECT_ROOT

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")


def test_the_first_pytest_ends_with_the_scorecard_on_an_80_column_screen(tmp_path: Path) -> None:
    solution = tmp_path / "solution.py"
    shutil.copyfile(PRISTINE_PATH, solution)
    session = f"kata-quick-{uuid.uuid4().hex[:8]}"
    command = (
        f"cd {shlex.quote(str(PROJECT_ROOT))} && env KATA_HOME={shlex.quote(str(tmp_path))} "
        f"{shlex.quote(sys.executable)} -m pytest --solution={shlex.quote(str(solution))} "
        "--kata-tier fast; echo EXITED $?; sleep 60"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    try:
        deadline = time.monotonic() + 120
        screen = ""
        while time.monotonic() < deadline and "EXITED" not in screen:
            time.sleep(0.2)
            screen = subprocess.run(
                ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
            ).stdout
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)
    lines = [line.rstrip() for line in screen.splitlines() if line.strip()]
    assert lines[-1] == "EXITED 1", screen
    # The whole scorecard is on the last screen, after pytest's own summary...
    assert any(" failed" in line and " in " in line for line in lines), screen
    for task in ("A  claim_next_job", "B  create_campaign_jobs", "D  process_job"):
        assert any(task in line and "not started" in line for line in lines), screen
    # ...and it ends with the next step and the re-run command, neither wrapped nor cut.
    assert "next: python -m harness hint A" in lines, screen
    rerun = f"pytest --solution={solution} --kata-tier fast --kata-seed 1"
    assert rerun in screen.replace("\n", ""), screen
    assert all(len(line) <= 80 for line in lines)
