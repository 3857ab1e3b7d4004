"""Every screen at 80x24, in a real terminal (tmux): the watch board in its states, a race's
timeline as a pager, the hint, and each drill's board, debrief and ``--explain``.

What a reader at 80 columns must never meet: a line the terminal had to fold (``capture-pane -J``
joins what it folded, so such a line comes back longer than 80 columns: a word cut in two, a
panel overflowing), a panel's edge missing, a title cut short. The one line allowed to be longer
is a command to copy, which is folded whole by the terminal on purpose.
"""

from __future__ import annotations

import os
import re
import secrets
import shlex
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from conftest import BACKENDS, base_config
from harness.cli.sources import PRISTINE_PATH
from harness.paths import PROJECT_ROOT

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")

WIDTH, HEIGHT = 80, 24
RACY = PROJECT_ROOT / "fixtures" / "solutions" / "buggy" / "a_select_then_update.py"


class Tmux:
    """A tmux server of our own (its own socket), its panes 80x24."""

    def __init__(self) -> None:
        self.socket = f"kata-screens-{secrets.token_hex(4)}"

    def __call__(self, *args: str) -> str:
        return subprocess.run(
            ["tmux", "-L", self.socket, *args], check=True, capture_output=True, text=True
        ).stdout

    def start(self, name: str, command: str, env: dict[str, str]) -> None:
        subprocess.run(
            ["tmux", "-L", self.socket, "new-session", "-d", "-s", name, "-x", str(WIDTH),
             "-y", str(HEIGHT), "-c", str(PROJECT_ROOT), f"{command}; echo EXITED $?; sleep 120"],
            check=True, env={**env, "TERM": "xterm-256color"},
        )  # fmt: skip
        self("set-option", "-t", name, "history-limit", "20000")

    def screen(self, name: str) -> str:
        return self("capture-pane", "-p", "-J", "-t", name)

    def history(self, name: str) -> str:
        return self("capture-pane", "-p", "-J", "-S", "-", "-t", name)

    def press(self, name: str, *keys: str) -> None:
        self("send-keys", "-t", name, *keys)

    def wait_for(
        self, name: str, done: Callable[[str], bool], what: str, timeout: float = 60.0
    ) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen(name)
            if done(screen):
                return screen
            time.sleep(0.1)
        raise AssertionError(f"never showed {what} in {timeout:g} s:\n{self.history(name)}")


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    server = Tmux()
    try:
        yield server
    finally:
        subprocess.run(["tmux", "-L", server.socket, "kill-server"], capture_output=True)


def assert_whole(text: str, *, commands: tuple[str, ...] = ()) -> None:
    """No line folded by the terminal (longer than 80 once joined), no panel left open or
    overflowing (every box on a line closed on it)."""
    for line in text.splitlines():
        line = line.rstrip()
        if any(command in line for command in commands):
            continue
        assert len(line) <= WIDTH, f"folded by the terminal ({len(line)} columns):\n{line}"
        # Every box on the line (a board has two side by side) is closed on it.
        assert line.count("╭") == line.count("╮"), f"a box's top edge cut:\n{line}"
        assert line.count("├") == line.count("┤"), f"a section's title line cut:\n{line}"
        assert line.count("╰") == line.count("╯"), f"a box's bottom edge cut:\n{line}"
        if line.lstrip().startswith(("│", "╰", "├")):
            assert line.endswith(("│", "╯", "┤")), f"a panel's line overflows:\n{line}"
            assert line.count("│") % 2 == 0, f"a panel's line overflows:\n{line}"


# -- the watch board -------------------------------------------------------------------------------


def test_the_watch_board_its_timeline_pager_and_its_hint_at_80x24(
    tmux: Tmux, tmp_path: Path
) -> None:
    solution = tmp_path / "solution.py"
    shutil.copyfile(PRISTINE_PATH, solution)
    env = {**os.environ, "KATA_HOME": str(tmp_path / "home")}
    tmux.start(
        "dev",
        f"{shlex.quote(sys.executable)} -m harness dev --solution {shlex.quote(str(solution))} "
        "--test-timeout 10",
        env,
    )
    stubs = tmux.wait_for("dev", lambda s: "not started" in s, "the stubs not started", 30)
    assert_whole(stubs)

    shutil.copyfile(RACY, solution)  # A claims with a SELECT then an UPDATE: a race
    failing = tmux.wait_for(
        "dev",
        lambda s: (
            "t: the timeline of this race" in s
            and "B  create_campaign_jobs" in s
            and "✔ passing" in s.split("B  create_campaign_jobs")[1].splitlines()[0]
        ),
        "A failing with a race, B passing",
        90,
    )
    assert_whole(failing)
    assert "✘ failing" in failing

    tmux.press("dev", "t")
    pager = tmux.wait_for("dev", lambda s: "what happened: A" in s, "the timeline")
    assert_whole(pager)
    lines = pager.splitlines()
    assert lines[0].startswith("╭─ what happened: A · claim_next_job")
    assert "c: replay command" in lines[HEIGHT - 1] and "q/Esc: back" in lines[HEIGHT - 1]
    body = [line[1:-1] for line in lines[1 : HEIGHT - 1]]
    # SQL is indented under its event, never back at the box's first column.
    assert all(not line.strip() or line.startswith(" ") for line in body)
    assert any(line.lstrip().startswith(("SELECT", "UPDATE")) for line in body)
    sql = [line for line in body if line.lstrip().startswith(("SELECT", "UPDATE", "BY", "id"))]
    assert all(line.startswith("     ") for line in sql), sql

    tmux.press("dev", "Down")  # an arrow scrolls, it does not close the pager
    time.sleep(0.3)
    assert "what happened: A" in tmux.screen("dev")
    tmux.press("dev", "c")
    command = tmux.wait_for("dev", lambda s: "any key: back" in s, "the replay command")
    replay = next(line for line in command.splitlines() if line.startswith("pytest "))
    assert re.search(r"'harness/grading/test_task_a_\w+\.py::\S+'$", replay), replay
    tmux.press("dev", "x")
    tmux.wait_for("dev", lambda s: "what happened: A" in s, "the pager again")
    tmux.press("dev", "q")  # q leaves the pager, not the watcher
    tmux.wait_for("dev", lambda s: "h  hint" in s, "the board again")

    tmux.press("dev", "h")
    hint = tmux.wait_for("dev", lambda s: "hint for A" in s, "the hint")
    assert_whole(hint)
    assert "hint for A · claim_next_job() · 1 of 3: a nudge" in hint
    assert "h: the concept" in hint
    tmux.press("dev", "Escape")
    tmux.wait_for("dev", lambda s: "h  hint" in s, "the board again")
    tmux.press("dev", "q")
    tmux.wait_for("dev", lambda s: "EXITED 0" in s, "the watcher quitting", 30)
    after = tmux.history("dev").split("EXITED 0")[0]
    assert_whole(after, commands=("replay the race: ", replay))
    assert f"replay the race: {replay}" in after


# -- the drills ------------------------------------------------------------------------------------

#: (incident, the answer given, what its debrief must say)
DRILLS = (
    (1, "B", "Right: B."),
    (2, "C", "Why not:"),  # a wrong answer: why it does not fit this run
    (3, "C", "Right: C."),
    (4, "A", "Why not:"),  # a wrong answer: the workers died, all running one job
)
#: The live board at 80x24 is the compact one (the whole board is about 40 lines): its sections'
#: titles, each whole between its frame's dashes.
BOARD_TITLES = (
    re.compile(r"╭─ Queue \(200 jobs in the db\) ─"),
    re.compile(r"╭─ Throughput \(jobs done or failed\) ─"),
    re.compile(r"├─ Latency (\(claim; each step\)|: p50 p95 p99) ─"),
    re.compile(r"├─ Pool & txns: [\d,]+ round trips ─"),
    re.compile(r"├─ Workers \(20\): now \(avg\) ─"),
    re.compile(r"├─ External APIs \(ledger\) & emails ─"),
)


def assert_board_whole(screen: str) -> None:
    """The live board on the screen from its header to its boxes' bottom edge, every section
    there with its title whole: nothing cropped at the screen's bottom by rich's Live."""
    lines = screen.splitlines()
    assert len(lines) <= HEIGHT
    top = next(i for i, line in enumerate(lines) if line.startswith(" INCIDENT "))
    board = "\n".join(lines[top:])
    assert board.count("╭") == 2 and board.count("╰") == 2, board  # both columns, closed
    assert "..." not in board, board  # Live's mark of a board cut at the screen's bottom
    for title in BOARD_TITLES:
        assert title.search(board), f"{title.pattern!r} missing:\n{board}"
    assert_whole(board)


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_drill_board_debrief_and_explanation_at_80x24(
    tmux: Tmux, tmp_path: Path, backend: str
) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["KATA_HOME"] = str(tmp_path / "home")
    db = shlex.quote(base_config(backend).url)
    for number, answer, _ in DRILLS:  # all at once: most of a run is waiting
        drill = f"{shlex.quote(sys.executable)} -m scenarios {number} --db {db}"
        tmux.start(
            f"drill{number}",
            f"{drill} --duration 2 --jobs 200 --grace 0.5 --no-input --answer {answer} "
            f"--change 'a heartbeat, send outside the transaction'; {drill} --explain",
            env,
        )
    # Mid-run, all at once (a run lasts 2 s): the board whole at the screen's size.
    live: dict[int, str] = {}
    deadline = time.monotonic() + 90
    while len(live) < len(DRILLS) and time.monotonic() < deadline:
        for number, _, _ in DRILLS:
            screen = tmux.screen(f"drill{number}")
            if number not in live and re.search(r"/2 s \S+ running", screen) and "╰" in screen:
                live[number] = screen
            assert number in live or "Totals re-counted" not in screen, "missed the live board"
        time.sleep(0.05)
    numbers = {number for number, _, _ in DRILLS}
    assert set(live) == numbers, f"no live board seen for {numbers - set(live)}"
    for screen in live.values():
        assert_board_whole(screen)
    for number, _, said in DRILLS:
        tmux.wait_for(f"drill{number}", lambda s: "EXITED" in s, f"drill {number} ending", 120)
        text = tmux.history(f"drill{number}")
        assert "EXITED 0" in text, text
        assert_whole(text)
        board = text.split("Totals re-counted")[0]  # the last frame stays: whole too
        assert_board_whole(board[board.rindex(" INCIDENT ") :])
        assert re.search(r"L lock +\d+ \(\d+\.\d\)", board)  # the Workers' average, whole
        # Each latency on the line of its step, with its unit.
        step = re.search(r"send_email step +(\S+) +(\S+) +(\S+)", board)
        assert step and all(re.fullmatch(r"[\d.]+m?s|-", v) for v in step.groups()), board
        debrief = text.split("Debrief")[1].split("Next")[0]
        assert said in debrief, debrief
        explained = text.split("Root cause")[-1]
        assert "The jobs that show it" in explained and "The fix" in explained
        if number == 1:  # the step on the board, the API call in the explanation
            assert "send_email step" in board
            assert "SendGrid's send_email API call itself" in " ".join(explained.split())
        if number == 2:
            why = "A claim that is not atomic gives one pending job to two workers"
            assert why in " ".join(debrief.split()), debrief
        if number == 4:  # the job that killed them, on the board and in its history
            assert re.search(r"\d+ died, all running job \d+", board), board
            assert "workers died running it" in " ".join(explained.split())
