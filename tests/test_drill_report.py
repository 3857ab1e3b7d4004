"""``scenarios N --report PATH``: the recorded run (and its fixed run) as one self-contained HTML
page whose plotly charts draw in a browser without the network; drawn in headless Chromium when
it is installed (apt-get install chromium)."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

from click.testing import CliRunner, Result

from conftest import base_config
from scenarios import store
from scenarios.cli import main

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHARTS = ("queue-flawed", "queue-fixed", "throughput", "pool", "workers-flawed", "workers-fixed")


def _external(page: str) -> list[str]:
    """What the page would fetch: scripts, stylesheets and images with an address."""

    class Links(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.found: list[str] = []

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            self.found += [value or "" for name, value in attrs if name in ("src", "href")]

    parser = Links()
    parser.feed(page)
    return parser.found


def _invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"KATA_HOME": str(home)})


def test_the_report_is_one_page_of_the_recorded_runs_and_draws_offline(
    backend: str, tmp_path: Path
) -> None:
    home, db = tmp_path / "home", base_config(backend).url
    load = ("--duration", "2", "--jobs", "300", "--grace", "0.5")
    fixed = _invoke(home, "2", "--db", db, *load, "--fixed", "--no-input")
    assert fixed.exit_code == 0, fixed.output
    report = tmp_path / "report.html"
    written = _invoke(home, "2", "--db", db, "--report", str(report))
    assert written.exit_code == 0, written.output
    [watched_path] = (home / "drills").glob("2-*-flawed.json.gz")
    watched = store.load(str(watched_path))
    s = watched.snapshot

    page = report.read_text()
    assert _external(page) == []  # self-contained: plotly's JavaScript is in the page
    for chart in CHARTS:
        assert f'id="chart-{chart}"' in page
    assert watched.id in page
    flat = re.sub(r"\s+", " ", page)
    assert f"{s.duplicate_copies:,} duplicate copies went to {s.duplicated_recipients:,}" in flat
    assert "The same load and seed, measured twice" in page

    if CHROMIUM is None:
        # No browser here: the page was read, not drawn. CI installs Debian's chromium (.ci/run),
        # so there the drawing is always checked.
        assert not os.environ.get("CI"), "CI must draw the page: install chromium (.ci/run)"
        return
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=5000",
            "--dump-dom",
            report.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    ).stdout
    drawn = re.findall(r'id="chart-([\w-]+)"[^>]*class="plotly-graph-div[^"]*js-plotly-plot', dom)
    assert sorted(drawn) == sorted(CHARTS), dom[:2000]
    assert dom.count('class="main-svg"') >= len(CHARTS)
