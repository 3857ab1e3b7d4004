"""A recorded session as one self-contained HTML page (``python -m harness report``).

``render(summary)`` and ``render_compare(a, b)`` are pure: a summary in, a page out. The timeline
is a plotly chart drawn as the drills' report draws its own (the same layout and embedding
helpers, plotly's JavaScript in the page, so it opens offline). Every figure an interviewer
reads also sits in the page as text, in an element with a ``data-figure`` attribute, so that a
test can read it back from the DOM a browser built.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from scenarios.report import _STYLE, _chart, _e, _layout

from ..tasks import FUNCTIONS, LETTERS, title
from .analysis import STATES, SessionSummary, TaskSummary, clock
from .design import strong_points

if TYPE_CHECKING:
    from plotly.graph_objects import Figure

__all__ = ["render", "render_compare"]

_STATE_COLOURS = dict(zip(STATES, ("#c7c7c7", "#d62728", "#98df8a", "#2ca02c"), strict=True))
_PHASE_COLOURS = {
    "design": "#e8eef8",
    "implement": "#f8f3e6",
    "debug": "#f8e8e8",
    "wrap up": "#eef4e8",
}
_MORE_STYLE = """
.side { display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }
.side > div { min-width: 0; } .side pre { white-space: pre-wrap; }
.evidence li { margin: 0.2rem 0; } .over { color: #d62728; } .under { color: #2ca02c; }
details pre { margin-top: 0.3rem; } .muted { color: #777; }
"""


def render(summary: SessionSummary) -> str:
    """The whole page of one session."""
    body = [
        f"<h1>Session {summary.id}: {_when(summary)}</h1>",
        _facts(summary),
        "<h2>The hour</h2>",
        _chart(_timeline(summary), f"timeline-{summary.id}"),
        "<h2>Per task, against the interview guide</h2>",
        _tasks(summary),
        "<h2>Mistakes met on the way, in order</h2>",
        _mistakes(summary),
        "<h2>Hints used</h2>",
        _hints(summary),
        "<h2>Drills</h2>",
        _drills(summary),
        "<h2>Design notes</h2>",
        _design(summary),
        "<h2>What the interview looks for</h2>",
        "<p class='muted'>Each concept with what this session shows of it: no score.</p>",
        _concepts(summary),
        "<h2>The final code</h2>",
        f"<pre data-figure='final-code'>{_e(summary.final_code or '(not recorded)')}</pre>",
    ]
    return _page(f"Session {summary.id}", body)


def render_compare(a: SessionSummary, b: SessionSummary) -> str:
    """Two sessions side by side: the figures per task, then each one's hour."""
    rows = []
    for task in LETTERS:
        x, y = a.tasks[task], b.tasks[task]
        rows.append(
            f"<tr data-task='{task}'><td>{task} · {_e(title(task))}</td>"
            f"{_pair(_m(x.first_attempt), _m(y.first_attempt))}"
            f"{_pair(_m(x.full_pass), _m(y.full_pass))}"
            f"{_pair(_mistakes_of(a, task), _mistakes_of(b, task))}"
            f"{_pair(x.hints, y.hints)}</tr>"
        )
    head = (
        "<tr><th></th><th colspan=2>first attempt</th><th colspan=2>full-tier pass</th>"
        "<th colspan=2>mistakes</th><th colspan=2>hint level</th></tr>"
        + "<tr><th></th>"
        + f"<th>#{a.id}</th><th>#{b.id}</th>" * 4
        + "</tr>"
    )
    body = [
        f"<h1>Sessions {a.id} and {b.id}</h1>",
        f"<p>#{a.id}: {_when(a)}. #{b.id}: {_when(b)}.</p>",
        f"<table data-figure='compare'>{head}{''.join(rows)}</table>",
        f"<div class='side'><div><h2>#{a.id}</h2>{_chart(_timeline(a), f'timeline-{a.id}')}"
        f"{_facts(a)}</div><div><h2>#{b.id}</h2>{_chart(_timeline(b), f'timeline-{b.id}')}"
        f"{_facts(b)}</div></div>",
    ]
    return _page(f"Sessions {a.id} and {b.id}", body)


# -- parts ---------------------------------------------------------------------------------------


def _page(heading: str, body: list[str]) -> str:
    from plotly.offline import get_plotlyjs  # only the report needs plotly

    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{_e(heading)}</title><style>{_STYLE}{_MORE_STYLE}</style>"
        f"<script>{get_plotlyjs()}</script></head><body>{''.join(body)}</body></html>\n"
    )


def _when(summary: SessionSummary) -> str:
    import datetime

    start = datetime.datetime.fromtimestamp(summary.started).strftime("%Y-%m-%d %H:%M")
    what = "an interview" if summary.interview else f"a {summary.kind} session"
    return f"{what}, {start}, {clock(summary.length)} long ({summary.ended})"


def _facts(summary: SessionSummary) -> str:
    facts = [
        ("saves", len(summary.saves)),
        ("mistakes", len(summary.mistakes)),
        ("hints", len(summary.hints)),
        ("timelines", len(summary.timelines)),
        ("drills", len(summary.drills)),
        ("passed", "".join(t for t, row in summary.tasks.items() if row.full_pass is not None)),
    ]
    cells = "".join(
        f"<tr><td>{name}</td><td class='n' data-figure='{name}'>{_e(value) or '—'}</td></tr>"
        for name, value in facts
    )
    return f"<table>{cells}</table>"


def _timeline(summary: SessionSummary) -> Figure:
    """Each task's state over time (a bar per stretch), the saves and hints as marks, and the
    interview's parts behind it all."""
    import plotly.graph_objects as go

    figure = go.Figure()
    rows = ["saves", *reversed(LETTERS)]
    for state in STATES:
        segments = [s for s in summary.segments if s.state == state]
        figure.add_trace(
            go.Bar(
                y=[s.task for s in segments],
                x=[max((s.end - s.start) / 60, 0.02) for s in segments],
                base=[s.start / 60 for s in segments],
                orientation="h",
                name=state,
                marker={"color": _STATE_COLOURS[state]},
                hovertemplate="%{y}: " + state + " from %{base:.1f} min<extra></extra>",
            )
        )
    figure.add_trace(
        go.Scatter(
            x=[(event.at - summary.started) / 60 for event in summary.saves],
            y=["saves"] * len(summary.saves),
            mode="markers",
            marker={"symbol": "line-ns-open", "size": 14, "color": "#333"},
            name="save",
        )
    )
    figure.add_trace(
        go.Scatter(
            x=[at / 60 for at, *_ in summary.hints],
            y=[task for _, task, *_ in summary.hints],
            text=[f"hint {task}{level}" for _, task, level, _ in summary.hints],
            mode="markers+text",
            textposition="top center",
            marker={"symbol": "star", "size": 12, "color": "#d4a017"},
            name="hint",
        )
    )
    for part, start, end in summary.phases:
        figure.add_vrect(
            x0=start / 60,
            x1=end / 60,
            fillcolor=_PHASE_COLOURS.get(part, "#eeeeee"),
            opacity=0.6,
            layer="below",
            line_width=0,
            annotation_text=part,
            annotation_position="bottom left",
        )
    figure.update_layout(barmode="overlay")
    figure.update_yaxes(categoryorder="array", categoryarray=rows)
    _layout(figure, "Each task's state over the session", "")
    figure.update_layout(xaxis_title="minutes", height=360)
    return figure


def _tasks(summary: SessionSummary) -> str:
    rows = [
        "<tr><th>task</th><th>first attempt</th><th>full-tier pass</th><th>time on task</th>"
        "<th>the guide</th><th>hint level</th></tr>"
    ]
    for task, row in summary.tasks.items():
        rows.append(
            f"<tr data-task='{task}'><td>{task} · {_e(title(task))}</td>"
            f"<td class='n' data-figure='first-attempt-{task}'>{_m(row.first_attempt)}</td>"
            f"<td class='n' data-figure='full-pass-{task}'>{_m(row.full_pass)}</td>"
            f"{_against_guide(row)}"
            f"<td class='n' data-figure='hint-level-{task}'>{row.hints}</td></tr>"
        )
    note = (
        "<p class='muted'>Times from the start of the session; time on task runs from the "
        "first attempt to the first full-tier pass.</p>"
    )
    return f"<table>{''.join(rows)}</table>{note}"


def _against_guide(row: TaskSummary) -> str:
    spent, guide = row.time_on_task, row.guide_minutes
    if guide is None:
        return f"<td class='n'>{_m(spent)}</td><td></td>"
    if spent is None:
        return f"<td class='n'>—</td><td class='n'>{guide} min</td>"
    over = spent > guide * 60
    css = "over" if over else "under"
    return (
        f"<td class='n {css}' data-figure='time-on-task-{row.task}'>{_m(spent)}</td>"
        f"<td class='n'>{guide} min ({'over' if over else 'within'})</td>"
    )


def _mistakes(summary: SessionSummary) -> str:
    if not summary.mistakes:
        return "<p data-figure='no-mistakes'>No failing verdict in this session.</p>"
    rows = [
        "<tr><th>#</th><th>task</th><th>met at</th><th>first diagnosis</th>"
        "<th>saves to fix</th><th>fixed at</th></tr>"
    ]
    for number, mistake in enumerate(summary.mistakes, 1):
        fix = (
            f"<details><summary>the fix</summary><pre>{_e(mistake.fix)}</pre></details>"
            if mistake.fix
            else ""
        )
        saves = mistake.saves_to_fix
        rows.append(
            f"<tr data-mistake='{number}' data-task='{mistake.task}'><td>{number}</td>"
            f"<td>{mistake.task}</td>"
            f"<td class='n'>{_m(mistake.met_at)} (save {mistake.met_save}, "
            f"{_e(mistake.tier)} tier)</td>"
            f"<td data-figure='diagnosis'>{_e(mistake.diagnosis)}{fix}</td>"
            f"<td class='n' data-figure='saves-to-fix'>{'not fixed' if saves is None else saves}"
            f"</td><td class='n'>{_m(mistake.fixed_at)}</td></tr>"
        )
    return f"<table>{''.join(rows)}</table>"


def _hints(summary: SessionSummary) -> str:
    if not summary.hints:
        return "<p>None.</p>"
    rows = "".join(
        f"<tr data-hint='{task}{level}'><td class='n'>{_m(at)}</td><td>{task} · "
        f"{_e(FUNCTIONS.get(task, task))}()</td><td class='n'>level {level}</td>"
        f"<td>{_e(source)}</td></tr>"
        for at, task, level, source in summary.hints
    )
    return f"<table><tr><th>at</th><th>task</th><th>level</th><th>from</th></tr>{rows}</table>"


def _drills(summary: SessionSummary) -> str:
    if not summary.drills:
        return "<p>None answered during this session.</p>"
    rows = []
    for at, data in summary.drills:
        made = [p["point"] for p in data.get("review", []) if p.get("made") and not p.get("warns")]
        fell = [p["point"] for p in data.get("review", []) if p.get("made") and p.get("warns")]
        verdict = "right" if data.get("correct") else "wrong"
        rows.append(
            f"<tr data-drill='{_e(data.get('scenario'))}'><td class='n'>{_m(at)}</td>"
            f"<td>scenario {_e(data.get('scenario'))}<br><code>{_e(data.get('run'))}</code></td>"
            f"<td data-figure='drill-answer'>{_e(data.get('given'))}</td>"
            f"<td data-figure='drill-verdict'>{verdict} (the answer: {_e(data.get('right'))})</td>"
            f"<td>{_e(data.get('change') or '—')}</td>"
            f"<td>{_e('; '.join(made) or '—')}"
            + (f"<br>falls for: {_e('; '.join(fell))}" if fell else "")
            + "</td></tr>"
        )
    head = (
        "<tr><th>at</th><th>drill</th><th>answer</th><th>debrief</th><th>the change written</th>"
        "<th>points the change makes</th></tr>"
    )
    return f"<table>{head}{''.join(rows)}</table>"


def _design(summary: SessionSummary) -> str:
    if summary.design is None:
        return "<p>No design notes (they are offered during an interview's design part).</p>"
    notes = _e(summary.design)
    untouched = " (the template, unchanged)" if summary.design_is_template else ""
    points = "".join(
        f"<li>{_e(line[2:])}</li>" if line.startswith("- ") else f"<p>{_e(line.strip('*'))}</p>"
        for line in strong_points().splitlines()
        if line.strip()
    )
    return (
        f"<div class='side'><div><h3>Written{untouched}</h3><pre data-figure='design'>"
        f"{notes}</pre></div><div><h3>What a strong answer covers</h3><ul>{points}</ul>"
        "</div></div>"
    )


def _concepts(summary: SessionSummary) -> str:
    parts = []
    for concept in summary.concepts:
        items = "".join(f"<li>{_e(line)}</li>" for line in concept.evidence)
        slug = concept.name.lower().replace(" ", "-")
        parts.append(
            f"<h3>{_e(concept.name)}</h3><ul class='evidence' data-concept='{slug}'>{items}</ul>"
        )
    return "".join(parts)


def _mistakes_of(summary: SessionSummary, task: str) -> int:
    return sum(1 for mistake in summary.mistakes if mistake.task == task)


def _pair(x: object, y: object) -> str:
    return f"<td class='n'>{_e(x)}</td><td class='n'>{_e(y)}</td>"


def _m(seconds: float | None) -> str:
    return "—" if seconds is None else clock(seconds)
