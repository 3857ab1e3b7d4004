"""``scenarios N --report PATH``: the recorded run (and its fixed run) as one self-contained HTML
page whose plotly charts draw in a browser without the network; drawn in headless Chromium when
it is installed (apt-get install chromium), where no chart's toolbar covers its title. Drill 2,
and drill 4, whose workers die (each death marked on the throughput)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from conftest import base_config
from scenarios import store
from scenarios.cli import main
from scenarios.snapshot import Snapshot

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHARTS = ("queue-flawed", "queue-fixed", "throughput", "pool", "workers-flawed", "workers-fixed")
#: Appended to a copy of the page: once the charts are drawn, where each one's title and toolbar
#: (plotly's modebar) are, written into the page for --dump-dom to carry out.
PROBE = """<script>
window.addEventListener("load", () => setTimeout(() => {
  const box = (element) => {
    if (!element) return null;
    const r = element.getBoundingClientRect();
    return [r.left, r.top, r.right, r.bottom];
  };
  const charts = [...document.querySelectorAll(".js-plotly-plot")].map((chart) => ({
    id: chart.id,
    title: box(chart.querySelector(".gtitle")),
    modebar: box(chart.querySelector(".modebar")),
  }));
  const out = document.createElement("pre");
  out.id = "kata-layout";
  out.textContent = JSON.stringify(charts);
  document.body.appendChild(out);
}, 1000));
</script>"""


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


def _overlap(a: list[float], b: list[float]) -> bool:
    left, top, right, bottom = a
    return left < b[2] and b[0] < right and top < b[3] and b[1] < bottom


def _script_of(page: str, chart: str) -> str:
    """The call that draws ``chart``: its traces and layout."""
    start = page.index(f'"chart-{chart}",')  # Plotly.newPlot("chart-...", [traces], layout)
    end = page.find("Plotly.newPlot", start)
    return page[start : end if end > 0 else len(page)]


def _invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(main, list(args), env={"KATA_HOME": str(home)})


def _quoted(number: int, s: Snapshot) -> str:
    """What the page's evidence says of drill ``number``'s run, in the board's figures."""
    if number == 2:
        return f"{s.duplicate_copies:,} duplicate copies went to {s.duplicated_recipients:,}"
    return f"{s.crashes:,} workers died mid-job"


@pytest.mark.parametrize("number", [2, 4])
def test_the_report_is_one_page_of_the_recorded_runs_and_draws_offline(
    backend: str, tmp_path: Path, number: int
) -> None:
    home, db = tmp_path / "home", base_config(backend).url
    load = ("--duration", "2", "--jobs", "300", "--grace", "0.5")
    fixed = _invoke(home, str(number), "--db", db, *load, "--fixed", "--no-input")
    assert fixed.exit_code == 0, fixed.output
    report = tmp_path / "report.html"
    written = _invoke(home, str(number), "--db", db, "--report", str(report))
    assert written.exit_code == 0, written.output
    [watched_path] = (home / "drills").glob(f"{number}-*-flawed.json.gz")
    watched = store.load(str(watched_path))
    s = watched.snapshot

    page = report.read_text()
    assert _external(page) == []  # self-contained: plotly's JavaScript is in the page
    for chart in CHARTS:
        assert f'id="chart-{chart}"' in page
    assert watched.id in page
    flat = re.sub(r"\s+", " ", page)
    assert _quoted(number, s) in flat
    assert "The same load and seed, measured twice" in page
    # Each worker that died is marked on the throughput at the moment it died.
    died = "a worker died - production code"
    assert (f"{died} ({s.crashes:,})" in _script_of(page, "throughput")) == (number == 4)
    # The job statuses are lines of their own: a stacked "failed" would trace the total.
    for chart in ("queue-flawed", "queue-fixed"):
        assert "stackgroup" not in _script_of(page, chart)

    if CHROMIUM is None:
        # No browser here: the page was read, not drawn. CI installs Debian's chromium (.ci/run),
        # so there the drawing is always checked.
        assert not os.environ.get("CI"), "CI must draw the page: install chromium (.ci/run)"
        return
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", PROBE + "</body>"))
    dom = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--window-size=1280,2000",
            "--virtual-time-budget=5000",
            "--dump-dom",
            probed.as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=True,
    ).stdout
    drawn = re.findall(r'id="chart-([\w-]+)"[^>]*class="plotly-graph-div[^"]*js-plotly-plot', dom)
    assert sorted(drawn) == sorted(CHARTS), dom[:2000]
    assert dom.count('class="main-svg"') >= len(CHARTS)
    layout = re.search(r'<pre id="kata-layout">([^<]*)</pre>', dom)
    assert layout is not None, "the probe never ran"
    charts = json.loads(layout.group(1))
    assert sorted(chart["id"] for chart in charts) == sorted(f"chart-{c}" for c in CHARTS)
    for chart in charts:
        assert chart["title"] and chart["modebar"], chart
        assert not _overlap(chart["title"], chart["modebar"]), chart
