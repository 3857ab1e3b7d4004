"""A drill's run is recorded, and everything after it reads the record: the debrief after the
answer, ``--explain`` (no new run), ``--fixed`` (the fix on the same load and seed, compared with
the recorded run) and ``--replay`` all quote the run that was watched. Through the CLI, on both
backends."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner, Result

from conftest import base_config
from harness.sql.models import MAX_ATTEMPTS
from scenarios import INCIDENTS, store
from scenarios.cli import main
from scenarios.questions import question_for
from scenarios.quiz import review_change

INTERNAL = ("Task exception", "AsyncConnection", "Traceback", "driver message", "was never")


def _invoke(home: Path, *args: str) -> Result:
    return CliRunner().invoke(
        main, list(args), env={"KATA_HOME": str(home), "COLUMNS": "120"}, catch_exceptions=False
    )


def test_explain_fixed_and_replay_quote_the_run_that_was_watched(
    backend: str, tmp_path: Path
) -> None:
    home, db = tmp_path / "home", base_config(backend).url
    watched = _invoke(
        home,
        *("3", "--db", db, "--duration", "2", "--jobs", "400", "--grace", "0.5", "--no-input"),
        *("--answer", "C", "--change", "send outside the transaction, and a bigger pool"),
        *("--answers-file", str(tmp_path / "answers.jsonl")),
    )
    assert watched.exit_code == 0, watched.output
    for noise in INTERNAL:  # workers cut off at the stop make the drivers talk: not on screen
        assert noise not in watched.output
    [path] = (home / "drills").glob("3-*-flawed.json.gz")
    run = store.load(str(path))
    s = run.snapshot
    assert f"{s.pool.timeouts:,} PoolTimeout" in watched.output and run.id in watched.output

    # The debrief: the verdict, the change point by point, this run's evidence, what to run next.
    debrief = watched.output.split("Debrief")[1]
    assert "Right: C." in debrief
    assert "✓  send the email outside any transaction" in debrief
    assert "careful: not a bigger pool" in debrief
    assert f"Evidence from this run ({run.id})" in debrief
    assert f"{s.pool.timeouts:,} PoolTimeouts" in " ".join(debrief.split())
    for step in ("scenarios 3 --explain", "scenarios 3 --fixed", "scenarios 3 --replay"):
        assert step in debrief
    assert json.loads((tmp_path / "answers.jsonl").read_text())["run"] == run.id
    assert store.load(str(path)).answer == {
        "given": "C",
        "right": "C",
        "correct": True,
        "change": "send outside the transaction, and a bigger pool",
    }

    # --explain runs nothing and quotes the recorded run.
    explained = _invoke(home, "3", "--db", db, "--explain", "--json")
    assert explained.exit_code == 0, explained.output
    document = json.loads(explained.stdout)
    assert document["recorded"] is True and list(document["runs"]) == ["flawed"]
    assert document["runs"]["flawed"]["id"] == run.id
    assert document["runs"]["flawed"]["figures"] == run.figures()
    assert f"{s.pool.timeouts:,} PoolTimeouts" in document["explanation"]["evidence"][0]
    assert len(list((home / "drills").glob("*.json.gz"))) == 1

    # --fixed runs the whole fix on the same load and seed, and compares with the recorded run.
    fixed = _invoke(home, "3", "--db", db, "--fixed", "--json")
    assert fixed.exit_code == 0, fixed.output
    document = json.loads(fixed.stdout)
    before, after = document["runs"]["flawed"], document["runs"]["fixed"]
    assert before["id"] == run.id and before["figures"] == run.figures()
    assert after["fixed_of"] == run.id and after["dialect"] == backend == before["dialect"]
    assert after["load"] == before["load"] and after["grace_s"] == before["grace_s"] == 0.5
    assert after["figures"]["pool_timeouts"] == 0 < before["figures"]["pool_timeouts"]
    assert after["figures"]["p99_claim_s"] < before["figures"]["p99_claim_s"]
    for noise in INTERNAL:
        assert noise not in fixed.output

    # --explain now has the fixed run too; --replay redraws both and compares them.
    explained = _invoke(home, "3", "--db", db, "--explain", "--no-input")
    flat = " ".join(explained.output.split())
    assert f"0 PoolTimeouts (was {s.pool.timeouts:,})" in flat
    replayed = _invoke(home, "3", "--db", db, "--replay")
    assert replayed.exit_code == 0, replayed.output
    assert f"{s.pool.timeouts:,} PoolTimeout" in replayed.output
    assert "the same load and seed, measured twice" in replayed.output
    assert f"Recorded as {run.id}" in replayed.output


def test_a_recorded_run_that_is_not_there_is_a_usage_error(tmp_path: Path) -> None:
    home = tmp_path / "home"
    missing = _invoke(home, "1", "--explain", "--run", "1-20990101-000000000-flawed")
    assert missing.exit_code == 2 and "no recorded run" in missing.output
    nothing = _invoke(home, "2", "--replay")
    assert nothing.exit_code == 2 and "run `scenarios 2` first" in nothing.output


def test_the_change_is_read_point_by_point_and_a_bigger_pool_is_flagged() -> None:
    question = question_for(3, "postgresql")
    review = {point.label: made for point, made in review_change(question, "grow the pool")}
    assert review == {
        "send the email outside any transaction": False,
        "an idempotency key per job and step, the same on every retry and worker": False,
        "not a bigger pool: every extra connection would sit idle during sends too": True,
    }
    made = review_change(question_for(1, "sqlite"), "one UPDATE ... RETURNING, email after commit")
    assert [made for _, made in made] == [True, True, False]


def test_the_question_speaks_of_the_backend_that_ran() -> None:
    sqlite, postgres = question_for(1, "sqlite"), question_for(1, "postgresql")
    assert "write lock" in sqlite.choice("B").text and "row lock" not in sqlite.choice("B").text
    assert "row lock" in postgres.choice("B").text
    assert sqlite.letters == postgres.letters and sqlite.right == postgres.right


def test_a_crash_loop_is_recorded_refuted_and_cleared_by_the_counting_reaper(
    backend: str, tmp_path: Path
) -> None:
    """Drill 4 through the CLI: a wrong answer is told why it does not fit this run (the workers
    died, all of them running one job), --explain quotes the record, and --fixed's counting
    reaper fails that job after MAX_ATTEMPTS deaths."""
    home, db = tmp_path / "home", base_config(backend).url
    load = INCIDENTS[4].quick
    watched = _invoke(
        home,
        *("4", "--db", db, "--duration", f"{load.duration:g}", "--jobs", str(load.jobs)),
        *("--grace", "0.5", "--no-input", "--answer", "B", "--change", "a bigger pool"),
        *("--answers-file", str(tmp_path / "answers.jsonl")),
    )
    assert watched.exit_code == 1, watched.output  # a wrong answer
    for noise in INTERNAL:
        assert noise not in watched.output
    [path] = (home / "drills").glob("4-*-flawed.json.gz")
    run = store.load(str(path))
    s, killer = run.snapshot, run.facts["crashes"]["jobs"][0]
    assert s.most_crashed is not None and s.most_crashed.job_id == killer["job_id"]
    assert s.crashes == killer["crashes"] > MAX_ATTEMPTS and killer["row"]["attempts"] == 0

    debrief = " ".join(watched.output.split("Debrief")[1].split())
    assert "you answered B; the root cause is D" in debrief
    why = debrief.split("Why not:")[1].split("It is:")[0]
    assert "a PoolTimeout is an exception the worker's code sees and survives" in why
    one_job = f"all {s.crashes:,} workers that died were running one job, job {killer['job_id']}"
    assert one_job in why
    assert "careful: not more memory or a bigger pool" in debrief
    assert f"{s.crashes:,} workers died mid-job" in debrief  # the explanation follows

    explained = _invoke(home, "4", "--db", db, "--explain", "--json")
    assert explained.exit_code == 0, explained.output
    document = json.loads(explained.stdout)
    assert document["runs"]["flawed"]["id"] == run.id
    assert document["runs"]["flawed"]["signature"]["shows_flaw"] is True
    evidence = " ".join(document["explanation"]["evidence"])
    assert f"returned job {killer['job_id']} to the queue {killer['recovered']} times" in evidence
    assert "Its attempts read 0" in evidence

    fixed = _invoke(home, "4", "--db", db, "--fixed", "--json")
    assert fixed.exit_code == 0, fixed.output
    document = json.loads(fixed.stdout)
    after = document["runs"]["fixed"]
    assert after["fixed_of"] == run.id and after["deployment"]["count_recoveries"] is True
    assert after["signature"]["shows_flaw"] is False
    assert (
        f"killed {MAX_ATTEMPTS} workers, then the reaper failed it" in after["signature"]["summary"]
    )
    replayed = _invoke(home, "4", "--db", db, "--replay")
    assert replayed.exit_code == 0, replayed.output
    assert f"crashes: {s.crashes:,} workers died mid-job" in replayed.output
