"""A race's verdict comes with the timeline that broke it: only the workers and events that
conflict, in order, each with the line of the candidate's code (or "the harness", playing the
other worker), rendered at a fixed width; the same every run for a choreographed race; in
``--kata-json`` as structured events, with the command that replays the test alone."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import BACKENDS, POSTGRES_URL, graded_json
from harness.grading.scorecard import Outcome, Scorecard
from harness.paths import PROJECT_ROOT
from harness.world.history import History

BUGGY = PROJECT_ROOT / "fixtures" / "solutions" / "buggy"


def first_failure(entry: str, task: str, backend: str, tmp_path: Path) -> tuple[Outcome, str]:
    """Grade catalogue ``entry`` up to its first failure: that outcome, and its timeline
    as the scorecard prints it at 80 columns, times masked."""
    db = ["--db", POSTGRES_URL] if backend == "postgresql" else []
    report = graded_json(
        f"--solution={BUGGY / entry}", "--kata-task", task, "-x", *db, tmp_path=tmp_path
    )
    scorecard = Scorecard("x", backend, 1, "full")
    for test in report["tests"]:
        scorecard.add(Outcome(**test))
    [(_, outcome, lines)] = scorecard.timelines(80)
    return outcome, "\n".join(re.sub(r"^ +\d+\.\d{3} s", "  T", line) for line in lines)


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_claim_race_shows_the_read_the_other_claim_and_the_write_that_took_it_anyway(
    backend: str, tmp_path: Path
) -> None:
    outcome, shown = first_failure("a_select_then_update.py", "A", backend, tmp_path)
    assert outcome.name == (
        "test_a_claim_rechecks_the_job_it_read_before_taking_it[job-claimed-under-it]"
    )
    # On PostgreSQL the other worker's claim is a transaction of its own (with a lock timeout,
    # so that a read that holds a lock is not punished): the timeline says so.
    begin, commit = (
        ("  T  worker-2   the harness\n              BEGIN\n",
         "  T  worker-2   the harness\n              COMMIT\n")
        if backend == "postgresql" else ("", "")
    )  # fmt: skip
    assert shown == (
        "  T  worker-1   a_select_then_update.py:16\n"
        "              SELECT id FROM jobs WHERE status = 'pending' AND run_after <= ?\n"
        "                ORDER BY id LIMIT 1 → job 4\n"
        f"{begin}"
        "  T  worker-2   the harness\n"
        "              UPDATE jobs SET status = 'running', worker_id = ?, claimed_at = ?,\n"
        "                updated_at = ? WHERE id = ? AND status = 'pending' RETURNING id\n"
        "                → job 4, 1 row\n"
        f"{commit}"
        "  T  worker-1   a_select_then_update.py:22\n"
        "              SELECT * FROM jobs WHERE id = ? LIMIT 2 → job 4\n"
        "  T  worker-1   a_select_then_update.py:24\n"
        "              UPDATE jobs SET campaign_id = ?, email = ?, status = ?, step = ?,\n"
        "                worker_id = ?, attempts = ?, last_error = ?, message_id = ?,\n"
        "                sentiment = ?, action_id = ?, run_after = ?, claimed_at = ?,\n"
        "                created_at = ?, updated_at = ? WHERE id = ? RETURNING * → job 4,\n"
        "                1 row"
    )
    assert outcome.replay is not None and outcome.replay.endswith(
        "'harness/grading/test_task_a_claim.py::"
        "test_a_claim_rechecks_the_job_it_read_before_taking_it[job-claimed-under-it]'"
    )
    # The same every run: the race is choreographed, not hoped for.
    again, shown_again = first_failure("a_select_then_update.py", "A", backend, tmp_path)
    assert shown_again == shown
    assert [e["worker"] for e in again.timeline if e["what"] not in ("BEGIN", "COMMIT")] == [
        "worker-1", "worker-2", "worker-1", "worker-1"
    ]  # fmt: skip


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stale_save_shows_the_job_handed_over_the_move_under_it_and_the_save(
    backend: str, tmp_path: Path
) -> None:
    outcome, shown = first_failure("c_saves_the_whole_stale_job.py", "C", backend, tmp_path)
    assert outcome.name == "test_recording_the_message_id_leaves_the_rest_of_the_job_alone"
    assert shown == (
        "  T  worker-1   the harness\n"
        "              send_email_step() is given job 1 at step send_email (running,\n"
        "                worker_id worker-1)\n"
        "  T  worker-2   the harness\n"
        "              UPDATE jobs SET worker_id = ?, step = ?, updated_at = ? WHERE id =\n"
        "                ? → job 1, 1 row\n"
        "  T  worker-1   c_saves_the_whole_stale_job.py:31\n"
        "              send_email(ada@example.com) → ok C52_hFX5svksMxxediFQDQ, key\n"
        "                job-1-send_email\n"
        "  T  worker-1   c_saves_the_whole_stale_job.py:48\n"
        "              UPDATE jobs SET campaign_id = ?, email = ?, status = ?, step = ?,\n"
        "                worker_id = ?, attempts = ?, last_error = ?, message_id = ?,\n"
        "                sentiment = ?, action_id = ?, run_after = ?, claimed_at = ?,\n"
        "                created_at = ?, updated_at = ? WHERE id = ? RETURNING * → job 1,\n"
        "                1 row"
    )


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_duplicate_after_a_crash_shows_the_crash_the_lease_and_the_second_effect(
    backend: str, tmp_path: Path
) -> None:
    outcome, shown = first_failure("d_new_crm_key_per_attempt.py", "D", backend, tmp_path)
    assert outcome.name.endswith("[right-after-the-crm-action]")
    story = [(e["worker"], e["kind"], e["what"].split("(")[0]) for e in outcome.timeline]
    crash = story.index(("harness", "recovery", "lease expired: job 1 back to pending "))
    before, after = story[:crash], story[crash:]
    assert ("worker-1", "call", "route_customer") in before
    assert ("worker-1", "crash", "crashed ") in before
    assert ("worker-1#1", "call", "route_customer") in after
    assert "crashed (after crm applied" in shown and "lease expired: job 1" in shown
    assert "d_new_crm_key_per_attempt.py:32" in shown  # the line that made both calls
    assert all(len(line) <= 80 for line in shown.splitlines())


def test_a_lone_workers_mistake_has_no_timeline(tmp_path: Path) -> None:
    report = graded_json(
        f"--solution={BUGGY / 'a_no_order_by.py'}", "--kata-task", "A", "-x", tmp_path=tmp_path
    )
    failed = [t for t in report["tests"] if t["status"] == "fail"]
    assert failed and failed[0]["timeline"] == [] and failed[0]["replay"] is None


def test_the_history_stays_bounded() -> None:
    history = History(limit=100)
    for n in range(10_000):
        history.statement(float(n), "worker-1", "SELECT * FROM jobs WHERE id = ?", [n], [], 0)
    assert len(history.events) == 100
    assert [e.jobs for e in history.timeline([9_999]).events] == [(9_999,)]


async def test_watch_mode_gets_the_timeline_apart_from_the_diagnosis_and_shows_it_on_a_key(
    tmp_path: Path,
) -> None:
    from rich.console import Console

    from harness.cli.board import BoardState, TaskRow, render_board
    from harness.cli.grading_process import GradeRequest, run_grading

    run = await run_grading(
        GradeRequest(solution=BUGGY / "a_select_then_update.py", tier="fast", tasks="A")
    )
    tally = run.tallies()["A"]
    assert tally.status == "failing"
    assert "what happened" not in (tally.diagnosis or "")  # the board's diagnosis stays calm
    assert any("the harness" in line for line in tally.timeline)
    assert tally.timeline[-1].startswith("  replay: pytest")
    state = BoardState(solution="solution.py", backend="sqlite")
    state.tasks["A"] = TaskRow(
        "A", "failing", 5, 10, diagnosis=tally.diagnosis, timeline=tally.timeline
    )
    console = Console(width=100, record=True)
    console.print(render_board(state))
    assert "t: the timeline of this race" in console.export_text()


def test_drill_2_tells_a_duplicated_jobs_story_with_the_graders_timeline(
    backend: str, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from conftest import base_config
    from scenarios.cli import main as scenarios

    home, db = {"KATA_HOME": str(tmp_path)}, base_config(backend).url
    load = ("--duration", "3", "--jobs", "300", "--grace", "0.5", "--no-input")
    watched = CliRunner().invoke(scenarios, ["2", "--db", db, *load], env=home)
    assert watched.exit_code == 0, watched.output
    explained = CliRunner().invoke(scenarios, ["2", "--explain", "--no-input"], env=home)
    # One story per job shown, each from its "its customer got N emails" line.
    stories = re.split(r"^(?=job \d+ .*its customer got)", explained.output, flags=re.M)[1:]
    assert stories, explained.output

    def lease_story(story: str) -> bool:
        """A send, the lease expiring under it, then a second send. (Which duplicated job shows
        it depends on timing: under load a worker's own retry may come before the expiry.)"""
        first = story.find("send_email(")
        expired = story.find("lease expired: job", first) if first >= 0 else -1
        return expired >= 0 and story.find("send_email(", expired) > expired

    # The same drawing as a race's timeline in the grader: when, who, which line of the drill's
    # code; the first send, the lease expiring under it, then the second send.
    assert any(lease_story(story) for story in stories), explained.output
    story = "\n".join(stories)
    assert re.search(r"^ +\d+\.\d{3} s  worker-\d+ +duplicate_emails\.py:\d+$", story, re.M)
