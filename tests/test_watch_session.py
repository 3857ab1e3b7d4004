"""The dev session without a terminal: its keys, its interview clock, and one save graded end to
end with the board printed (as it is when stdout is not a terminal)."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from harness import utcnow
from harness.cli import App
from harness.cli.grading_process import GradeRequest
from harness.cli.interview import PARTS, clock, summary
from harness.cli.results import GradeRun
from harness.cli.session import TRACE_ENV, DevSession
from harness.cli.sources import PRISTINE_PATH, function_span, reference_section
from harness.progress import Interview
from harness.worker.solutions import REFERENCE_PATH


@pytest.fixture
def solution(tmp_path: Path) -> Path:
    path = tmp_path / "solution.py"
    shutil.copyfile(PRISTINE_PATH, path)
    return path


def session(tmp_path: Path, solution: Path, **options: object) -> tuple[DevSession, io.StringIO]:
    out = io.StringIO()
    console = Console(file=out, width=120, color_system=None, force_terminal=False)
    app = App(home=tmp_path / "home")
    return DevSession(
        app, GradeRequest(solution=solution, test_timeout=10), console=console, **options
    ), out  # type: ignore[arg-type]


def passing_run(request: GradeRequest, task: str) -> GradeRun:
    run = GradeRun(request)
    run.apply({"event": "collected", "tests": [{"id": "t", "task": task}]})
    run.apply({"event": "result", "id": "t", "task": task, "outcome": "pass"})
    run.stop("done")
    return run


# --- keys ----------------------------------------------------------------------------------------


def test_h_shows_the_next_hint_level_of_the_first_task_not_passing(
    tmp_path: Path, solution: Path
) -> None:
    dev, _ = session(tmp_path, solution)
    dev.on_key("h")
    assert dev.state.panel is not None
    assert dev.state.panel.title.startswith("hint for A · claim_next_job() · 1 of 3: a nudge")
    dev.on_key("h")
    assert "2 of 3: the concept" in dev.state.panel.title
    assert dev.app.progress.hint_level("A") == 2

    dev.scoreboard.add(passing_run(dev.request, "A"))
    dev.on_key("h")
    assert dev.state.panel.title.startswith("hint for B · create_campaign_jobs() · 1 of 3")
    dev.on_key("\x1b")
    assert dev.state.panel is None


def test_t_shows_the_timeline_of_a_race_and_says_when_there_is_none(
    tmp_path: Path, solution: Path
) -> None:
    dev, _ = session(tmp_path, solution)
    dev.on_key("t")
    assert dev.state.panel is None and "no race to show" in (dev.state.info or "")
    run = GradeRun(dev.request)
    run.apply({"event": "collected", "tests": [{"id": "t", "task": "A"}]})
    timeline = ["    0.014 s  worker-1   solution.py:16", "              SELECT ... → job 4"]
    run.apply(
        {
            "event": "result",
            "id": "t",
            "task": "A",
            "outcome": "fail",
            "diagnosis": "job 4 was claimed by worker-1 and worker-2",
            "timeline": timeline,
        }
    )
    run.stop("done")
    dev.scoreboard.add(run)
    dev._refresh()
    dev.on_key("t")
    assert dev.state.panel is not None and dev.state.panel.kind == "timeline"
    assert dev.state.panel.title.startswith("what happened: A · claim_next_job")
    assert dev.state.panel.body == "\n".join(timeline)


def test_s_shows_the_reference_only_for_passed_tasks(tmp_path: Path, solution: Path) -> None:
    dev, _ = session(tmp_path, solution)
    dev.on_key("s")
    assert dev.state.panel is None and dev.state.info is not None
    assert "once it passes the full tier" in dev.state.info
    for task in "AC":
        dev.app.progress.record_result(task, "passing", tier="full", backend="sqlite")
    dev.on_key("s")
    assert dev.state.panel is not None and dev.state.panel.kind == "python"
    assert "async def claim_next_job" in dev.state.panel.body
    dev.on_key("s")
    assert "async def send_email_step" in dev.state.panel.body
    dev.on_key("s")
    assert "async def claim_next_job" in dev.state.panel.body


def test_r_f_and_q(tmp_path: Path, solution: Path) -> None:
    dev, _ = session(tmp_path, solution)
    dev.on_key("r")
    dev.on_key("F")
    assert [dev.commands.get_nowait(), dev.commands.get_nowait()] == ["grade", "full"]
    dev.on_key("x")  # not a key of ours: nothing happens
    assert dev.commands.empty() and not dev.quit.is_set()
    dev.on_key("q")
    assert dev.quit.is_set()


# --- the interview -------------------------------------------------------------------------------


def test_the_interview_clock_walks_through_its_parts() -> None:
    start = utcnow()
    names = [
        clock(start, start + timedelta(minutes=m)).part_name for m in (0, 14.9, 15, 39, 41, 56, 60)
    ]
    assert names == ["design", "design", "implement", "implement", "debug", "wrap up", "time is up"]
    assert [name for name, _ in PARTS] == ["design", "implement", "debug", "wrap up"]
    at = clock(start, start + timedelta(minutes=50))
    assert (at.part_left, at.total_left) == (5 * 60, 10 * 60)


def test_an_interview_starts_resumes_and_sums_up(tmp_path: Path, solution: Path) -> None:
    dev, _ = session(tmp_path, solution, interview=True)
    dev._start_interview()
    interview = dev.app.progress.interview
    assert interview is not None and dev.state.info is not None
    assert dev.state.info.startswith("interview started")

    again, _ = session(tmp_path, solution, interview=True)
    again._start_interview()
    assert again.app.progress.interview is not None
    assert again.app.progress.interview.started == interview.started
    assert again.state.info is not None and again.state.info.startswith("interview resumed")

    started = interview.started_at
    again.app.progress.record_result(
        "A",
        "passing",
        tier="full",
        backend="sqlite",
        when=started + timedelta(minutes=22, seconds=5),
    )
    lines = summary(again.app.progress.interview)  # type: ignore[arg-type]
    assert (lines[0].task, lines[0].passed_after, lines[0].part) == ("A", 22 * 60 + 5, "implement")
    assert lines[1].passed_after is None

    # An interview that ended long ago is not resumed.
    # (progress is read from the store each time: a change goes through a write, never through
    # an object read earlier)
    again.app.progress.interview = Interview((utcnow() - timedelta(hours=2)).isoformat())
    again._start_interview()
    assert again.state.info.startswith("interview started")


# --- a save, graded ------------------------------------------------------------------------------


async def test_a_save_is_graded_and_the_board_printed(
    tmp_path: Path, solution: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    trace = tmp_path / "trace.jsonl"
    monkeypatch.setenv(TRACE_ENV, str(trace))
    dev, out = session(tmp_path, solution)

    def traced() -> list[dict[str, Any]]:
        text = trace.read_text() if trace.exists() else ""
        return [json.loads(line) for line in text.splitlines()]

    running = asyncio.create_task(dev.run())

    async def printed(text: str, timeout: float = 60) -> None:
        for _ in range(int(timeout / 0.05)):
            if text in out.getvalue():
                return
            await asyncio.sleep(0.05)
        raise AssertionError(f"never printed {text!r}:\n{out.getvalue()}")

    try:
        await printed("every task is still a stub")
        stub = solution.read_text()
        start, end = function_span(stub, "claim_next_job") or (0, 0)
        lines = stub.splitlines(keepends=True)
        solution.write_text(
            "".join(lines[:start])
            + reference_section(REFERENCE_PATH.read_text(), "A")
            + "".join(lines[end:])
        )
        await printed("fast tier on sqlite: done")
        for _ in range(600):  # the fast tier's shares are all in once the full tier starts
            if any(e["event"] == "run-start" and e["tier"] == "full" for e in traced()):
                break
            await asyncio.sleep(0.05)
        # Its shares end one by one, but the run ends, is recorded and printed once.
        ends = [e for e in traced() if e["event"] == "run-end"]
        assert [e["tier"] for e in ends] == ["fast"]
        assert out.getvalue().count("fast tier on sqlite: done") == 1
        board = out.getvalue().split("fast tier on sqlite: done")[0].rsplit("Campaign-jobs", 1)[1]
        assert "✔ passing" in next(line for line in board.splitlines() if line.startswith("A  "))
        assert "not started" in next(line for line in board.splitlines() if line.startswith("B  "))
    finally:
        dev.quit.set()
        await asyncio.wait_for(running, 30)
    assert dev.pipeline is None
    assert "watching solution.py" not in out.getvalue().rsplit("Campaign-jobs", 1)[1]
