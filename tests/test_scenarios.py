"""scenarios: each incident's code shows its flaw in measured metrics and its fix does not; the
reference solution shows none of them; the board's totals are the database's and the ledger's;
the command grades answers and explains wrong ones. On both backends, at reduced size."""

from __future__ import annotations

import dataclasses
import io
import json
from collections import Counter
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from conftest import base_config
from harness.sql.database import Database
from harness.sql.isolation import isolated_database
from harness.sql.models import MAX_ATTEMPTS
from harness.worker.solutions import REFERENCE_PATH, load_solution
from scenarios import INCIDENTS, RunResult, TotalsMismatch, run_load, verify_totals
from scenarios.cli import main
from scenarios.dashboard import render
from scenarios.explanations import explain
from scenarios.figures import sparkline
from scenarios.questions import QUESTIONS
from scenarios.quiz import Choice, Question, grade_answer
from scenarios.signatures import signature
from scenarios.summary import plain_summary

#: Each incident's smallest load that shows its flaw (``Incident.quick``): 20 workers, a few
#: hundred jobs, a few seconds; the whole file takes a couple of minutes on both backends.
REFERENCE = load_solution(REFERENCE_PATH)


async def _measure(backend: str, number: int, key: str) -> RunResult:
    """Run incident ``number``'s load with one variant on a database the test owns, and check
    the result against that database once the run is over."""
    incident = INCIDENTS[number]
    variant = incident.variant(key, REFERENCE if key == "solution" else None)
    load = incident.quick
    options = incident.deployment_for(key).database_options(load)
    async with isolated_database(base_config(backend, **options), purpose="test") as database:
        result = await run_load(incident, variant, load, database=database)
        # Fresh connections: a worker cancelled at the deadline may leave a pooled one busy.
        check = Database(database.config)
        await check.open()
        try:
            await _assert_board_matches_database(result, check)
            if key == "flawed":
                wrong = dataclasses.replace(
                    result.snapshot, counts={**result.snapshot.counts, "completed": -1}
                )
                with pytest.raises(TotalsMismatch, match="completed jobs: dashboard -1"):
                    await verify_totals(wrong, check, result.services, created=result.created)
        finally:
            await check.close()
    return result


async def _assert_board_matches_database(result: RunResult, database: Database) -> None:
    rows = (await database.run("SELECT status, step, COUNT(*) AS n FROM jobs GROUP BY 1, 2")).rows
    by_status: Counter[str] = Counter()
    for row in rows:
        by_status[row["status"]] += int(row["n"])
        if row["status"] == "completed":
            assert row["step"] == "done"  # a completed job is a job, not a step
    board = result.snapshot
    assert board.counts == {s: by_status[s] for s in ("pending", "running", "completed", "failed")}
    assert sum(by_status.values()) == board.jobs == result.load.jobs
    per_recipient = Counter(d.to for d in result.services.ledger.deliveries)
    assert board.delivered == sum(per_recipient.values())
    assert board.duplicate_copies == sum(n - 1 for n in per_recipient.values() if n > 1)
    assert result.as_dict()["dashboard"] == {**result.totals.as_dict()}


def _board_text(result: RunResult) -> str:
    console = Console(width=140, record=True, file=io.StringIO())
    console.print(render(result.snapshot))
    return console.export_text()


@pytest.mark.parametrize("number", sorted(INCIDENTS))
async def test_incident_shows_its_flaw_and_neither_its_fix_nor_the_reference_does(
    backend: str, number: int
) -> None:
    flawed = await _measure(backend, number, "flawed")
    fixed = await _measure(backend, number, "fixed")
    reference = await _measure(backend, number, "solution")
    f, x, r = flawed.snapshot, fixed.snapshot, reference.snapshot

    assert signature(flawed, fixed).shows_flaw, signature(flawed, fixed).summary
    assert not signature(fixed, fixed).shows_flaw, signature(fixed, fixed).summary
    assert not signature(reference, fixed).shows_flaw, signature(reference, fixed).summary
    if number == 1:
        assert f.throughput_avg < fixed.jobs_per_minute / 4
        assert f.calls_in_transaction > 0 and x.calls_in_transaction == 0
        assert f.states_avg["waiting on a lock"] > x.states_avg["waiting on a lock"]
    elif number == 2:
        assert f.duplicate_copies > 0 and f.recoveries > 0
        assert x.duplicate_copies == 0 and r.duplicate_copies == 0
    elif number == 3:
        assert f.pool.timeouts > 0 and f.worker_errors.get("PoolTimeout", 0) > 0
        assert x.pool.timeouts == 0 and r.pool.timeouts == 0
        assert "PoolTimeout" not in x.worker_errors
    else:
        # One job killed more workers than MAX_ATTEMPTS, every one of them, and was never
        # failed; with the counting reaper (the fix's, and the reference's Task F) it kills
        # MAX_ATTEMPTS workers and is failed with last_error.
        poison, cured, referee = f.most_crashed, x.most_crashed, r.most_crashed
        assert poison and cured and referee
        assert poison.crashes == f.crashes > MAX_ATTEMPTS and not poison.given_up
        assert poison.recoveries >= MAX_ATTEMPTS and f.given_up == 0
        for run, killer in ((x, cured), (r, referee)):
            assert killer.job_id == poison.job_id and killer.given_up and run.given_up == 1
            assert killer.crashes == run.crashes == MAX_ATTEMPTS
        rows = [fixed.record.facts["crashes"]["jobs"][0]["row"]]
        rows.append(reference.record.facts["crashes"]["jobs"][0]["row"])
        assert all(row["status"] == "failed" and row["last_error"] for row in rows)
        assert flawed.record.facts["crashes"]["jobs"][0]["row"]["attempts"] == 0

    board = _board_text(flawed)
    for section in (
        "Queue depth",
        "Throughput",
        "Latency",
        "Connection pool",
        "Workers",
        "External APIs",
    ):
        assert section in board
    assert f"{f.counts['pending']:,}" in board and f"{f.delivered:,} delivered" in board
    summary = plain_summary(f)
    assert f"{f.counts['completed']:,} completed" in summary

    explanation = explain(flawed, fixed)
    assert explanation.evidence and explanation.fix
    assert any(
        f"{f.throughput_avg:,.0f}" in line
        or f"{f.duplicate_copies:,}" in line
        or f"{f.pool.timeouts:,}" in line
        or f"{f.crashes:,} workers died" in line
        for line in explanation.evidence
    )


def _invoke(tmp_path: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(
        main, [*args, "--answers-file", str(tmp_path / "answers.jsonl")], catch_exceptions=False
    )
    return result.exit_code, result.output


def test_cli_grades_a_right_answer_and_reports_measured_totals_as_json(
    backend: str, tmp_path: Path
) -> None:
    right = QUESTIONS[3].right
    code, output = _invoke(
        tmp_path,
        "3",
        "--duration",
        "1.5",
        "--jobs",
        "200",
        "--db",
        base_config(backend).url,
        "--no-input",
        "--answer",
        right.lower(),
        "--change",
        "no API call in a transaction",
        "--json",
    )
    assert code == 0, output
    document = json.loads(output)
    assert {k: v for k, v in document["answer"].items() if k != "review"} == {
        "given": right,
        "right": right,
        "correct": True,
        "change": "no API call in a transaction",
    }
    assert document["answer"]["review"][0] == {
        "point": "send the email outside any transaction",
        "made": True,
        "warns": False,
    }
    assert document["explanation"] is None
    run = document["runs"]["flawed"]
    assert run["verified"] is True and run["dialect"] == backend
    assert run["dashboard"] == run["database_totals"]
    assert sum(run["dashboard"][s] for s in ("pending", "running", "completed", "failed")) == 200
    assert run["signature"]["shows_flaw"] == (run["figures"]["pool_timeouts"] > 0)
    recorded = [json.loads(line) for line in (tmp_path / "answers.jsonl").read_text().splitlines()]
    assert recorded[-1]["correct"] is True and recorded[-1]["scenario"] == 3


def test_cli_explains_a_wrong_answer_with_this_runs_numbers(backend: str, tmp_path: Path) -> None:
    wrong = next(letter for letter in QUESTIONS[2].letters if letter != QUESTIONS[2].right)
    code, output = _invoke(
        tmp_path,
        "2",
        "--duration",
        "1.5",
        "--jobs",
        "200",
        "--db",
        base_config(backend).url,
        "--no-input",
        "--answer",
        wrong,
    )
    assert code == 1, output
    assert f"you answered {wrong}; the root cause is {QUESTIONS[2].right}" in output
    for heading in ("Root cause", "Evidence from this run", "The fix"):
        assert heading in output
    assert "Totals re-counted from the database and the ledger" in output
    assert "emails:" in output  # the plain summary, since the output is not a terminal


def test_cli_lists_the_incidents_and_rejects_an_answer_that_is_not_a_choice(
    tmp_path: Path,
) -> None:
    code, output = _invoke(tmp_path)
    assert code == 0
    for incident in INCIDENTS.values():
        assert incident.title in output
    result = CliRunner().invoke(main, ["1", "--answer", "Z", "--no-input"])
    assert result.exit_code == 2 and "--answer" in result.output


def test_grading_takes_any_case_and_rejects_unknown_letters() -> None:
    question = QUESTIONS[1]
    assert grade_answer(question, question.right.lower()).correct
    assert not grade_answer(
        question, next(x for x in question.letters if x != question.right)
    ).correct
    with pytest.raises(ValueError, match="not one of"):
        grade_answer(question, "Q")
    with pytest.raises(ValueError, match="4 or 5"):
        Question(prompt="?", choices=(Choice("A", "a"), Choice("B", "b")), right="A")
    assert all(4 <= len(q.choices) <= 5 for q in QUESTIONS.values())


def test_sparkline_scales_to_the_peak() -> None:
    assert sparkline([]) == ""
    assert sparkline([0.0, 0.0]) == "▁▁"
    assert sparkline([0.0, 50.0, 100.0]) == "▁▅█"
