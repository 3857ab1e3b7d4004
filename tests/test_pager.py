"""The watch board's open panels at 80x24: a pager that scrolls with the arrows, PgUp/PgDn and
j/k, closes with q or Esc, shows a race's conflict first when the screen is short, keeps SQL
under its event, and keeps the replay command whole (off the board, on ``c``)."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import pytest
from rich.console import Console

from harness.cli import App
from harness.cli.board import BoardPanel, BoardState, panel_body, render_board
from harness.cli.grading_process import GradeRequest
from harness.cli.keys import DOWN, END, ESC, PAGE_DOWN, PAGE_UP, UP, split_keys
from harness.cli.pager import body_rows, line_count, parse_timeline, scrolled
from harness.cli.results import GradeRun
from harness.cli.session import DevSession
from harness.cli.sources import PRISTINE_PATH
from harness.world.history import Event, Timeline

REPLAY = (
    "pytest --solution=/tmp/x/solution.py --kata-tier fast --kata-seed 1 "
    "'harness/grading/test_task_a_claim.py::test_a_claim_rechecks_the_job_it_read_before_"
    "taking_it[job-claimed-under-it]'"
)


def race(readers: int = 6) -> list[str]:
    """A long race as the grader draws it (100 columns), then its replay line."""
    select = "SELECT id FROM jobs WHERE status = 'pending' AND run_after <= ? ORDER BY id LIMIT 1"
    events = [
        Event(0.001 * i, f"worker-{i}", "sql", f"{select} → job 4", (4,), "solution.py:16")
        for i in range(1, readers + 1)
    ]
    update = (
        "UPDATE jobs SET status = 'running', worker_id = ?, claimed_at = ?, updated_at = ? "
        "WHERE id = ? RETURNING * → job 4, 1 row"
    )
    events += [
        Event(0.02, "worker-1", "sql", update, (4,), "solution.py:24 in claim_next_job()"),
        Event(0.03, "worker-2", "sql", update, (4,), "solution.py:24 in claim_next_job()"),
    ]
    return [*Timeline(events, 0.0).lines(100), f"  replay: {REPLAY}"]


def screen(state: BoardState, width: int = 80, height: int = 24) -> list[str]:
    console = Console(width=width, height=height, color_system=None, file=io.StringIO())
    with console.capture() as capture:
        console.print(render_board(state))
    return capture.get().splitlines()


def open_panel(panel: BoardPanel) -> BoardState:
    state = BoardState(solution="solution.py", backend="SQLite")
    state.panel, state.screen = panel, (80, 24)
    return state


def test_escape_sequences_arrive_as_one_key_and_a_lone_esc_is_esc() -> None:
    assert split_keys("h\x1b[Aj\x1b[B\x1b[5~\x1b[6~\x1bOA\x1b[1;5B") == [
        "h", UP, "j", DOWN, PAGE_UP, PAGE_DOWN, UP, DOWN,
    ]  # fmt: skip
    assert split_keys("\x1b") == [ESC]
    assert split_keys("\x1b[15~q") == ["q"]  # a function key: nothing, and never Esc


def test_a_race_is_laid_out_at_the_screen_width_with_its_sql_under_each_event() -> None:
    lines = screen(open_panel(BoardPanel("what happened: A", "\n".join(race(2)), "timeline")))
    assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
    inside = [line[1:-1] for line in lines[1:-1]]
    assert all(line.startswith(" ") for line in inside)
    body = [line.strip() for line in inside if line.strip()]
    # Every row of SQL is indented under its event's when-who-where line: never at column 1.
    for line in inside:
        if line.strip() and not line.strip()[0].isdigit():
            assert line.startswith("     "), line
    assert body[0].startswith("0.001 s  worker-1")
    assert "replay" not in "\n".join(lines)  # no room for it whole in the box: c shows it


def test_when_the_screen_is_short_the_conflict_comes_first() -> None:
    panel = BoardPanel("what happened: A", "\n".join(race(8)), "timeline")
    lines = screen(open_panel(panel))
    assert "the conflict: what changed the job, in order" in lines[1]
    assert "0.020 s  worker-1" in lines[2] and "UPDATE jobs SET status" in lines[3]
    assert "of " in lines[0]  # where the page is: "· 1-22 of 48"
    events, replay = parse_timeline(race(8))
    assert replay == REPLAY and len(events) == 10


def test_scrolling_stays_within_the_body() -> None:
    assert scrolled(0, UP, total=50, rows=22) == 0
    assert scrolled(0, "j", total=50, rows=22) == 1
    assert scrolled(0, PAGE_DOWN, total=50, rows=22) == 21
    assert scrolled(21, PAGE_DOWN, total=50, rows=22) == 28
    assert scrolled(28, PAGE_UP, total=50, rows=22) == 7
    assert scrolled(5, END, total=50, rows=22) == 28
    assert scrolled(5, "x", total=50, rows=22) is None


def test_the_hint_title_and_its_keys_are_whole_at_80_columns() -> None:
    title = "hint for A · claim_next_job() · 1 of 3: a nudge"
    keys = "h: the concept · ↑↓ j k PgUp PgDn · q/Esc: back"
    lines = screen(open_panel(BoardPanel(title, "Twenty workers...", keys=keys)))
    assert title in lines[0] and keys in lines[-1]


@pytest.fixture
def dev(tmp_path: Path) -> DevSession:
    solution = tmp_path / "solution.py"
    shutil.copyfile(PRISTINE_PATH, solution)
    console = Console(file=io.StringIO(), width=80, height=24, color_system=None)
    session = DevSession(
        App(home=tmp_path / "home"), GradeRequest(solution=solution), console=console
    )
    run = GradeRun(session.request)
    run.apply({"event": "collected", "tests": [{"id": "t", "task": "A"}]})
    run.apply(
        {
            "event": "result",
            "id": "t",
            "task": "A",
            "outcome": "fail",
            "diagnosis": "job 4 was claimed by worker-1 and worker-2",
            "timeline": race(8),
        }
    )
    run.stop("done")
    session.scoreboard.add(run)
    session._refresh()
    return session


def test_the_arrows_scroll_an_open_panel_and_q_closes_it_without_quitting(dev: DevSession) -> None:
    dev.on_key("t")
    panel = dev.state.panel
    assert panel is not None and panel.kind == "timeline" and panel.keys.startswith("c: replay")
    dev.on_key(DOWN)
    dev.on_key("j")
    assert panel.offset == 2 and dev.state.panel is panel
    dev.on_key(END)
    rows = body_rows(24)
    assert panel.offset == line_count(panel_body(panel, rows), 80) - rows
    dev.on_key("q")
    assert dev.state.panel is None and not dev.quit.is_set()
    dev.on_key("t")
    dev.on_key(ESC)
    assert dev.state.panel is None
    dev.on_key("q")
    assert dev.quit.is_set()


def test_c_gives_the_replay_command_on_one_line(dev: DevSession) -> None:
    dev.on_key("t")
    dev.on_key("c")
    out = dev.console.file.getvalue()  # type: ignore[attr-defined]
    assert f"replay the race: {REPLAY}\n" in out  # soft-wrapped: one line, however narrow
