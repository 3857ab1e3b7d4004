"""``--report PATH``: a recorded run as one self-contained HTML page, to keep or to share.

The page holds the incident's page, the load, the run's metrics over time as plotly charts (the
queue, the throughput with each worker that died, the pool, what the workers were doing), the
fix's run beside it when one was recorded, the before/after table, the explanation and the
offending jobs' histories. Every number is the record's, as the board showed it; plotly's
JavaScript is embedded, so the file opens anywhere, offline.
"""

from __future__ import annotations

import bisect
import html
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .comparison import comparison_rows
from .explanations import Explanation
from .incident import Incident
from .record import RunRecord
from .snapshot import STATES

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

__all__ = ["write_report"]

_STATUS_COLOURS = {
    "pending": "#d4a017",
    "running": "#17becf",
    "completed": "#2ca02c",
    "failed": "#d62728",
}
_STATE_COLOURS = {
    "waiting on a lock": "#d62728",
    "in an API call": "#d4a017",
    "claiming": "#17becf",
    "processing": "#2ca02c",
    "idle": "#c7c7c7",
    "stopped": "#7f7f7f",
}
_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 72rem; color: #222; }
h1 { font-size: 1.5rem; } h2 { font-size: 1.2rem; margin-top: 2rem; }
.page { font-style: italic; border-left: 4px solid #d62728; padding-left: 1rem; }
table { border-collapse: collapse; }
td, th { padding: 0.2rem 0.8rem; border-bottom: 1px solid #ddd; }
td.n { text-align: right; font-variant-numeric: tabular-nums; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; font-size: 0.85rem; }
.charts { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
"""


def write_report(
    path: Path,
    incident: Incident,
    watched: RunRecord,
    fixed: RunRecord | None,
    explanation: Explanation,
) -> Path:
    """Write the report of ``watched`` (and ``fixed``) to ``path``; return it."""
    from plotly.offline import get_plotlyjs  # imported here: only --report needs plotly

    runs = [watched] if fixed is None else [watched, fixed]
    charts = [_chart(_queue(run), f"queue-{run.variant}") for run in runs] + [
        _chart(_throughput(runs), "throughput"),
        _chart(_pool(runs), "pool"),
        *(_chart(_workers(run), f"workers-{run.variant}") for run in runs),
    ]
    load = watched.load
    body = [
        f"<h1>Incident {incident.number}: {_e(incident.title)}</h1>",
        f'<p class="page">{_e(incident.page_for(watched.dialect))}</p>',
        f"<p>Run <code>{_e(watched.id)}</code> ({_e(watched.label)}, {_e(watched.started)}) on "
        f"{_e(watched.database)}: {load.jobs:,} jobs, {load.workers} workers, "
        f"{load.duration:g} s, seed {load.seed}."
        + (f" Fixed run: <code>{_e(fixed.id)}</code>." if fixed is not None else "")
        + "</p>",
        "<h2>The run over time</h2>",
        f'<div class="charts">{"".join(charts)}</div>',
    ]
    if fixed is not None:
        body += ["<h2>The same load and seed, measured twice</h2>", _comparison(watched, fixed)]
    body += [
        "<h2>Root cause</h2>",
        f"<p>{_e(explanation.root_cause)}</p>",
        "<h2>Evidence from this run</h2>",
        "<ul>"
        + "".join(f"<li>{_e(line)}</li>" for line in [*explanation.evidence, *explanation.fixed])
        + "</ul>",
    ]
    if explanation.jobs:
        body += [
            "<h2>The jobs that show it</h2>",
            f"<pre>{_e(chr(10).join(explanation.jobs))}</pre>",
        ]
    body += ["<h2>The fix</h2>", f"<p>{_e(explanation.fix)}</p>"]
    document = (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Incident {incident.number}: {_e(incident.title)}</title>"
        f"<style>{_STYLE}</style><script>{get_plotlyjs()}</script></head>"
        f"<body>{''.join(body)}</body></html>\n"
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(document, encoding="utf-8")
    return path


# -- charts ----------------------------------------------------------------------------------------


def _queue(run: RunRecord) -> Figure:
    # Pending would dwarf the rest (thousands queued at once): its count is in the title. Each
    # status is a line of its own, not stacked: a stacked "failed" would be drawn along the top
    # of the completed area and read as if every job had failed.
    import plotly.graph_objects as go

    t = [s.elapsed for s in run.timeline]
    figure = go.Figure()
    for status, colour in _STATUS_COLOURS.items():
        if status == "pending":
            continue
        figure.add_trace(
            go.Scatter(
                x=t,
                y=[s.counts.get(status, 0) for s in run.timeline],
                name=status,
                line={"color": colour},
            )
        )
    pending = run.snapshot.counts.get("pending", 0)
    return _layout(figure, f"Jobs done and running - {run.label} ({pending:,} pending)", "jobs")


def _stacked(run: RunRecord, colours: dict[str, str], value: Callable[[Any, str], float]) -> Figure:
    """One stacked area per series (a job status, a worker state) over the run's samples."""
    import plotly.graph_objects as go

    t = [s.elapsed for s in run.timeline]
    figure = go.Figure()
    for name, colour in colours.items():
        figure.add_trace(
            go.Scatter(
                x=t,
                y=[value(s, name) for s in run.timeline],
                name=name,
                stackgroup="stack",
                line={"color": colour},
            )
        )
    return figure


def _throughput(runs: list[RunRecord]) -> Figure:
    import plotly.graph_objects as go

    figure = go.Figure()
    for run in runs:
        t = [s.elapsed for s in run.timeline]
        y = [s.throughput_now for s in run.timeline]
        figure.add_trace(
            go.Scatter(x=t, y=y, name=f"{run.label} (avg {run.snapshot.throughput_avg:,.0f})")
        )
        died = sorted(
            at for job in run.facts.get("crashes", {}).get("jobs", []) for at in job["at"]
        )
        if died:  # each worker that died, on the line at the moment it died
            figure.add_trace(
                go.Scatter(
                    x=died,
                    y=[y[min(bisect.bisect_left(t, at), len(y) - 1)] for at in died],
                    mode="markers",
                    marker={"symbol": "x", "size": 8},
                    name=f"a worker died - {run.label} ({len(died):,})",
                )
            )
    return _layout(figure, "Throughput, jobs/min (last 5 s)", "jobs/min")


def _pool(runs: list[RunRecord]) -> Figure:
    import plotly.graph_objects as go

    figure = go.Figure()
    for run in runs:
        t = [s.elapsed for s in run.timeline]
        figure.add_trace(
            go.Scatter(x=t, y=[s.pool.in_use for s in run.timeline], name=f"in use - {run.label}")
        )
        figure.add_trace(
            go.Scatter(
                x=t,
                y=[s.pool.waiting for s in run.timeline],
                name=f"waiting - {run.label}",
                line={"dash": "dot"},
            )
        )
    return _layout(figure, "Connection pool: connections in use, callers waiting", "callers")


def _workers(run: RunRecord) -> Figure:
    colours = {state: _STATE_COLOURS[state] for state in STATES}
    figure = _stacked(run, colours, lambda sample, state: sample.states.get(state, 0))
    figure.update_layout(legend_title_text=f"stacked: the top is all {run.load.workers}")
    return _layout(figure, f"What the workers were doing - {run.label}", "workers")


_HEIGHT = 340
#: The title's top, as a share of the chart's height from its bottom: 34 pixels from the top.
_TITLE_TOP = 1 - 34 / _HEIGHT


def _layout(figure: Figure, title: str, unit: str) -> Figure:
    # The title sits below plotly's toolbar (the modebar, drawn in the top 30 pixels of the
    # chart, on the right), so that neither covers the other however long the title.
    figure.update_layout(
        title={
            "text": title,
            "x": 0,
            "xanchor": "left",
            "xref": "paper",
            "y": _TITLE_TOP,
            "yanchor": "top",
            "yref": "container",
        },
        xaxis_title="seconds",
        yaxis_title=unit,
        height=_HEIGHT,
        margin={"l": 50, "r": 10, "t": 70, "b": 40},
        legend={"orientation": "h", "y": -0.25},
    )
    return figure


def _chart(figure: Figure, name: str) -> str:
    return str(
        figure.to_html(
            full_html=False, include_plotlyjs=False, div_id=f"chart-{name}", config=_CONFIG
        )
    )


_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True}


# -- tables ----------------------------------------------------------------------------------------


def _comparison(watched: RunRecord, fixed: RunRecord) -> str:
    rows = "".join(
        f"<tr><td>{_e(what)}</td><td class='n'>{_e(before)}</td><td class='n'>{_e(after)}</td></tr>"
        for what, before, after in comparison_rows(watched.snapshot, fixed.snapshot)
    )
    return f"<table><tr><th></th><th>watched</th><th>{_e(fixed.label)}</th></tr>{rows}</table>"


def _e(text: object) -> str:
    return html.escape(str(text))
