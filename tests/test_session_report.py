"""A scripted interview in a real terminal (tmux, 80x24) on a fast clock: design notes, a wrong
claim, a hint, the fix, a drill answered; then ``report`` draws the session, and the figures a
browser (headless Chromium) built from the page match what was done."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from html.parser import HTMLParser
from pathlib import Path

import pytest

from harness.cli.sources import PRISTINE_PATH, function_span, reference_section
from harness.paths import PROJECT_ROOT
from harness.record.store import Store
from harness.worker.solutions import REFERENCE_PATH
from scenarios.questions import question_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    shutil.which("tmux") is None or CHROMIUM is None, reason="needs tmux and chromium"
)
#: The hour in 60 s: design 15 s, implement 25 s, debug 15 s, wrap up 5 s.
SPEED = "60"
WRONG_CLAIM = PROJECT_ROOT / "fixtures" / "solutions" / "buggy" / "a_select_then_update.py"
NOTES = "jobs(id, campaign_id, email, status, run_after) with a unique (campaign_id, email)"


def _claim(source: str, claim: str) -> str:
    span = function_span(source, "claim_next_job")
    assert span is not None
    lines = source.splitlines(keepends=True)
    return "".join(lines[: span[0]]) + claim + "".join(lines[span[1] :])


def _wrong_claim() -> str:
    text = WRONG_CLAIM.read_text()
    span = function_span(text, "claim_next_job")
    assert span is not None
    return "".join(text.splitlines(keepends=True)[span[0] : span[1]])


def _events(home: Path, sql: str, *args: object) -> list[sqlite3.Row]:
    with Store.in_home(home).read() as connection:
        return connection.execute(f"SELECT * FROM events WHERE {sql} ORDER BY id", args).fetchall()


def _wait(condition: Callable[[], object], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"never saw {what} in {timeout:g} s")


class Figures(HTMLParser):
    """The text of every element with a ``data-figure`` attribute, by figure."""

    def __init__(self) -> None:
        super().__init__()
        self.figures: dict[str, list[str]] = {}
        self._open: list[str | None] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._open.append(dict(attrs).get("data-figure"))
        for figure in filter(None, self._open):
            self.figures.setdefault(figure, [])
        if self._open[-1]:
            self.figures[self._open[-1]].append("")

    def handle_endtag(self, tag: str) -> None:
        if self._open:
            self._open.pop()

    def handle_data(self, data: str) -> None:
        for figure in filter(None, self._open):
            self.figures[figure][-1] += data


@pytest.fixture
def interview(tmp_path: Path) -> Iterator[tuple[str, Path, Path]]:
    home, solution = tmp_path / "home", tmp_path / "candidate" / "solution.py"
    solution.parent.mkdir()
    shutil.copyfile(PRISTINE_PATH, solution)
    session = f"kata-report-{uuid.uuid4().hex[:8]}"
    command = (
        f"cd {shlex.quote(str(PROJECT_ROOT))} && env KATA_HOME={shlex.quote(str(home))} "
        f"KATA_INTERVIEW_SPEED={SPEED} {shlex.quote(sys.executable)} -m harness dev --interview "
        f"--solution {shlex.quote(str(solution))}; echo EXITED $?; sleep 60"
    )
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "80", "-y", "24", command],
        check=True,
        env={**os.environ, "TERM": "xterm-256color"},
    )
    try:
        yield session, home, solution
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def _press(session: str, *keys: str) -> None:
    for key in keys:
        subprocess.run(["tmux", "send-keys", "-t", session, key], check=True)
        time.sleep(0.3)


def _screen(session: str) -> str:
    return subprocess.run(
        ["tmux", "capture-pane", "-p", "-t", session], capture_output=True, text=True
    ).stdout


def _run(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, "KATA_HOME": str(home)},
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_scripted_interview_is_reported_with_the_figures_of_what_was_done(
    interview: tuple[str, Path, Path], tmp_path: Path
) -> None:
    session, home, solution = interview
    notes = solution.with_name("design.md")
    _wait(notes.exists, "design.md offered", timeout=30)
    notes.write_text(notes.read_text() + f"\n{NOTES}\n")
    _wait(lambda: _events(home, "kind = 'phase' AND data LIKE '%implement%'"), "implement")

    stub = solution.read_text()
    solution.write_text(_claim(stub, _wrong_claim()))
    _wait(lambda: _events(home, "kind = 'verdict' AND task = 'A' AND data LIKE '%failing%'"), "A")
    _press(session, "h", "t")
    solution.write_text(_claim(stub, reference_section(REFERENCE_PATH.read_text(), "A")))
    _wait(
        lambda: _events(
            home, "kind = 'verdict' AND task = 'A' AND data LIKE '%\"passing\",\"tier\":\"full%'"
        ),
        "A passing the full tier",
    )
    right = question_for(1, "sqlite").right
    drill = _run(home, "-m", "scenarios", "1", "--duration", "1", "--jobs", "200",
                 "--no-input", "--answer", right, "--change", "claim with SKIP LOCKED")  # fmt: skip
    assert drill.returncode == 0, drill.stdout + drill.stderr
    _press(session, "Escape", "q")
    _wait(lambda: "EXITED 0" in _screen(session) or _press(session, "q"), "dev quitting", 30)

    page = tmp_path / "report.html"
    written = _run(home, "-m", "harness", "report", "-o", str(page))
    assert written.returncode == 0, written.stderr
    markdown = _run(home, "-m", "harness", "report", "--format", "md", "-o", str(tmp_path / "r.md"))
    assert markdown.returncode == 0, markdown.stderr
    assert "## Mistakes met on the way" in (tmp_path / "r.md").read_text()

    dom = subprocess.run(
        [CHROMIUM or "chromium", "--headless", "--no-sandbox", "--disable-gpu",
         "--virtual-time-budget=5000", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    assert 'class="main-svg"' in dom  # plotly drew the timeline
    svg = re.sub(r"<[^>]+>", " ", dom)
    for part in ("design", "implement"):
        assert f" {part} " in svg
    parser = Figures()
    parser.feed(dom)
    figures = {name: [text.strip() for text in texts] for name, texts in parser.figures.items()}
    timelines = len(_events(home, "kind = 'timeline'"))
    assert figures["saves"] == ["2"]  # the wrong claim, then its fix
    assert figures["hints"] == ["1"] and figures["hint-level-A"] == ["1"]
    assert figures["timelines"] == [str(timelines) if timelines else "0"]
    assert figures["drills"] == ["1"]
    assert figures["drill-answer"] == [right] and figures["drill-verdict"][0].startswith("right")
    assert figures["passed"] == ["A"]
    assert figures["first-attempt-A"] != ["—"] and figures["full-pass-A"] != ["—"]
    assert "not one atomic step" in figures["diagnosis"][0]  # the wrong claim's, named
    assert figures["saves-to-fix"][0] == "1"
    assert NOTES in figures["design"][0]
    final = figures["final-code"][0]
    assert reference_section(REFERENCE_PATH.read_text(), "A").strip() in final
    assert 'job = await Job.get(id=rows[0]["id"])' not in final
