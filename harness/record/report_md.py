"""A recorded session as Markdown (``python -m harness report --format md``): the HTML page's
figures and sections, with the timeline told as a list of changes instead of a chart."""

from __future__ import annotations

from ..tasks import LETTERS, title
from .analysis import SessionSummary, clock
from .design import strong_points

__all__ = ["render", "render_compare"]


def render(summary: SessionSummary) -> str:
    lines = [f"# Session {summary.id}", "", _when(summary), ""]
    lines += [
        f"Saves: {len(summary.saves)} · mistakes: {len(summary.mistakes)} · hints: "
        f"{len(summary.hints)} · timelines opened: {len(summary.timelines)} · drills: "
        f"{len(summary.drills)}",
        "",
        "## The hour",
        "",
    ]
    lines += [f"- {part}: {clock(start)} to {clock(end)}" for part, start, end in summary.phases]
    changes = sorted(summary.segments, key=lambda s: (s.start, s.task))
    lines += [f"- {clock(s.start)} {s.task}: {s.state}" for s in changes]
    lines += ["", "## Per task, against the interview guide", ""]
    lines += [
        "| task | first attempt | full-tier pass | time on task | the guide | hint level |",
        "|---|---|---|---|---|---|",
    ]
    for task, row in summary.tasks.items():
        guide = f"{row.guide_minutes} min" if row.guide_minutes else ""
        lines.append(
            f"| {task} {title(task)} | {_m(row.first_attempt)} | {_m(row.full_pass)} | "
            f"{_m(row.time_on_task)} | {guide} | {row.hints} |"
        )
    lines += ["", "## Mistakes met on the way, in order", ""]
    for number, mistake in enumerate(summary.mistakes, 1):
        fixed = (
            "not fixed"
            if mistake.saves_to_fix is None
            else f"fixed in {mistake.saves_to_fix} save(s), at {clock(mistake.fixed_at or 0)}"
        )
        lines.append(
            f"{number}. **{mistake.task}** at {clock(mistake.met_at)} (save {mistake.met_save}, "
            f"{mistake.tier} tier): {mistake.diagnosis} — {fixed}"
        )
    if not summary.mistakes:
        lines.append("No failing verdict in this session.")
    lines += ["", "## Hints used", ""]
    lines += [
        f"- {clock(at)} {task} level {level} (from {source})"
        for at, task, level, source in summary.hints
    ] or ["None."]
    lines += ["", "## Drills", ""]
    for at, data in summary.drills:
        verdict = "right" if data.get("correct") else f"wrong (the answer: {data.get('right')})"
        lines.append(
            f"- {clock(at)} scenario {data.get('scenario')} (run {data.get('run')}): answered "
            f"{data.get('given')}, {verdict}; the change: {data.get('change') or '—'}"
        )
    if not summary.drills:
        lines.append("None answered during this session.")
    lines += ["", "## Design notes", ""]
    if summary.design is None:
        lines.append("None.")
    else:
        lines += ["```markdown", summary.design.rstrip(), "```", "", "What a strong answer covers:"]
        lines += ["", strong_points()]
    lines += ["", "## What the interview looks for", ""]
    for concept in summary.concepts:
        lines += [f"### {concept.name}", "", *(f"- {line}" for line in concept.evidence), ""]
    lines += ["## The final code", "", "```python", (summary.final_code or "").rstrip(), "```", ""]
    return "\n".join(lines)


def render_compare(a: SessionSummary, b: SessionSummary) -> str:
    lines = [
        f"# Sessions {a.id} and {b.id}",
        "",
        f"- #{a.id}: {_when(a)}",
        f"- #{b.id}: {_when(b)}",
        "",
        f"| task | first attempt #{a.id} | #{b.id} | full-tier pass #{a.id} | #{b.id} "
        f"| mistakes #{a.id} | #{b.id} | hint level #{a.id} | #{b.id} |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task in LETTERS:
        x, y = a.tasks[task], b.tasks[task]
        mistakes = [sum(1 for m in s.mistakes if m.task == task) for s in (a, b)]
        lines.append(
            f"| {task} | {_m(x.first_attempt)} | {_m(y.first_attempt)} | {_m(x.full_pass)} | "
            f"{_m(y.full_pass)} | {mistakes[0]} | {mistakes[1]} | {x.hints} | {y.hints} |"
        )
    return "\n".join(lines) + "\n"


def _when(summary: SessionSummary) -> str:
    import datetime

    start = datetime.datetime.fromtimestamp(summary.started).strftime("%Y-%m-%d %H:%M")
    what = "An interview" if summary.interview else f"A {summary.kind} session"
    return f"{what}, {start}, {clock(summary.length)} long ({summary.ended})."


def _m(seconds: float | None) -> str:
    return "—" if seconds is None else clock(seconds)
