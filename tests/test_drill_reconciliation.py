"""Every number a drill shows comes from one measured run and reconciles: the board (rendered at a
fixed width), the explanation, the before/after table and ``--explain`` read from the record all
quote the same figures, the figures agree with the database, errors by type add up to the pool's
count, peaks stay within what can exist, the words follow the backend, nothing internal reaches
the screen, and the fix clears the symptom the page names. Each drill, on both backends."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console, RenderableType

from conftest import base_config
from harness.sql.database import Database
from harness.sql.isolation import isolated_database
from scenarios import INCIDENTS, RunResult, run_load, store
from scenarios.cli import main
from scenarios.comparison import render_comparison
from scenarios.dashboard import render
from scenarios.explanations import explain
from scenarios.questions import question_for
from scenarios.signatures import symptom
from scenarios.snapshot import Snapshot

#: Each run is its incident's quick load (``Incident.quick``): a few seconds, and each flaw shows.
WIDTH = 120
STATUSES = ("pending", "running", "completed", "failed")
#: What the drivers and asyncio say while workers are cancelled: never for the candidate's eyes.
INTERNAL = ("Task exception", "AsyncConnection", "Traceback", "driver message", "was never")
#: Words that belong to one backend only.
FOREIGN = {
    "sqlite": ("row lock", "FOR UPDATE", "SKIP LOCKED"),
    "postgresql": ("write lock", "BEGIN IMMEDIATE", "busy timeout", "database is locked"),
}


async def _run(backend: str, number: int, key: str) -> tuple[RunResult, dict[str, int]]:
    """A run on a database the test owns, and the jobs by status as that database counts them."""
    incident = INCIDENTS[number]
    options = incident.deployment_for(key).database_options(incident.quick)
    async with isolated_database(base_config(backend, **options), purpose="test") as database:
        result = await run_load(incident, incident.variant(key), incident.quick, database=database)
        check = Database(database.config)  # a worker cancelled at the deadline may hold one
        await check.open()
        try:
            rows = (await check.run("SELECT status, COUNT(*) AS n FROM jobs GROUP BY 1")).rows
        finally:
            await check.close()
    counted = {str(row["status"]): int(row["n"]) for row in rows}
    return result, {status: counted.get(status, 0) for status in STATUSES}


def _text(renderable: RenderableType) -> str:
    console = Console(width=WIDTH, record=True, file=io.StringIO(), color_system=None)
    console.print(renderable)
    return console.export_text()


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1.0 else f"{value:.2f} s"


def _quoted(number: int, s: Snapshot) -> list[tuple[str, str]]:
    """(what the board shows, as a regular expression; what the explanation says) for the
    figures of incident ``number`` that both quote."""
    claim = _seconds(s.latency["claim"]["p99"])
    if number == 1:
        return [
            (
                rf"average\s+{s.throughput_avg:,.0f}\b",
                f"finished {s.throughput_avg:,.0f} jobs/min",
            ),
            (rf"claim\s.*{re.escape(claim)}", f"{claim} at p99"),
            (
                rf"waiting on a lock\s+\d+\s.*avg {s.states_avg['waiting on a lock']:.1f}",
                f"{s.states_avg['waiting on a lock']:.1f} of {s.workers} workers",
            ),
        ]
    if number == 2:
        return [
            (
                rf"{s.duplicate_copies:,} duplicate copies to {s.duplicated_recipients:,}",
                f"{s.duplicate_copies:,} duplicate copies went to {s.duplicated_recipients:,}",
            ),
            (
                rf"{s.recoveries:,} running jobs handed",
                f"{s.recoveries:,} running jobs were handed",
            ),
        ]
    if number == 4:
        return [
            (rf"{s.crashes:,} workers died mid-job", f"{s.crashes:,} workers died mid-job"),
            (
                rf"x stopped\s+\d+\s.*avg {s.states_avg['stopped']:.1f}",
                f"on average {s.states_avg['stopped']:.1f} of {s.workers} workers were down",
            ),
            (rf"lease\s+{s.lease:g} s, heartbeat on", f"{s.lease:g} s lease, heartbeat on"),
        ]
    return [
        (rf"{s.pool.timeouts:,} PoolTimeout", f"{s.pool.timeouts:,} PoolTimeouts"),
        (rf"peak {s.pool_peak_waiting} ", f"up to {s.pool_peak_waiting} callers"),
        (rf"claim\s.*{re.escape(claim)}", f"{claim} at p99"),
        (rf"full {s.pool_saturated_share:.0%}", f"full {s.pool_saturated_share:.0%}"),
    ]


@pytest.mark.parametrize("number", sorted(INCIDENTS))
async def test_the_board_the_explanation_and_the_comparison_quote_one_run_and_its_database(
    backend: str, number: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    watched, in_database = await _run(backend, number, "flawed")
    fixed, _ = await _run(backend, number, "fixed")
    w, f = watched.record, fixed.record
    f.fixed_of = w.id
    s = w.snapshot
    board = _text(render(s))
    explanation = explain(w, f)
    explained = "\n".join(
        [explanation.root_cause, *explanation.evidence, *explanation.fixed, explanation.fix]
    )
    comparison = _text(render_comparison(s, f.snapshot))

    # The board is the database.
    assert s.counts == in_database
    for status, n in in_database.items():
        assert re.search(rf"{status}\s+{n:,}\b", board), (status, n, board)

    # Errors by type add up to what the pool and the workers report; peaks can exist.
    assert s.pool.timeouts == s.worker_errors.get("PoolTimeout", 0) + s.harness_errors.get(
        "PoolTimeout", 0
    )
    assert sum(e["count"] for e in w.facts["errors"]) == sum(s.worker_errors.values())
    assert sum(e["count"] for e in w.facts["harness_errors"]) == sum(s.harness_errors.values())
    for name, n in s.worker_errors.items():
        assert f"{name} {n:,}" in board
    assert s.pool_peak_waiting <= s.callers_bound
    assert f"peak {s.pool_peak_waiting} " in board and f"at most {s.callers_bound}" in board

    # Every figure the explanation quotes is the board's, formatted the same way.
    for on_board, in_explanation in _quoted(number, s):
        assert re.search(on_board, board), (on_board, board)
        assert in_explanation in explained, (in_explanation, explained)

    # The before/after table is these two runs.
    for before, after in (
        (f"{s.counts['completed']:,}", f"{f.snapshot.counts['completed']:,}"),
        (f"{s.pool.timeouts:,}", f"{f.snapshot.pool.timeouts:,}"),
        (f"{s.duplicate_copies:,}", f"{f.snapshot.duplicate_copies:,}"),
        *([(f"{s.crashes:,}", f"{f.snapshot.crashes:,}")] if s.crashes else []),
    ):
        assert re.search(rf"│\s+{before}\s+│\s+{after}\s+│", comparison), (before, after)

    # The words follow the backend, and nothing internal shows.
    question = question_for(number, backend)
    words = "\n".join(
        [
            INCIDENTS[number].page_for(backend),
            question.prompt,
            *(c.text for c in question.choices),
            explained,
        ]
    )
    for foreign in FOREIGN[backend]:
        assert foreign.lower() not in words.lower(), (foreign, words)
    for text in (board, explained, comparison):
        for noise in INTERNAL:
            assert noise not in text

    # The fix clears the symptom on the page.
    cleared = symptom(w, f)
    assert not cleared.shows_flaw, cleared.summary

    # --explain reads this run from the record and quotes the same figures.
    monkeypatch.setenv("KATA_HOME", str(tmp_path))
    store.save(w)
    store.save(f)
    result = CliRunner().invoke(
        main, [str(number), "--explain", "--no-input"], env={"COLUMNS": str(WIDTH)}
    )
    assert result.exit_code == 0, result.output
    assert w.id in result.output
    flat = " ".join(result.output.split())
    for _, in_explanation in _quoted(number, s):
        assert " ".join(in_explanation.split()) in flat, in_explanation
    for noise in INTERNAL:
        assert noise not in result.output
