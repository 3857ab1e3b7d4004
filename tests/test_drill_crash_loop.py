"""Drill 4's world and the parts of a drill it added: a poison customer whose reply kills the
worker that analyzes it (and nothing else), dead workers restarted after a back-off, and
``--solution`` running the candidate's own reaper (Task F's ``recover_stalled_jobs``) in the
monitor, or saying that it is not written yet. The catalogue declares every drill once, and the
README and the help list each."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import base_config
from harness.exceptions import WorkerCrashed
from harness.paths import PROJECT_ROOT
from harness.sql.models import MAX_ATTEMPTS
from harness.worker.solutions import REFERENCE_PATH
from harness.world.faults import FaultPlan
from harness.world.replies import reply_for
from scenarios import INCIDENTS
from scenarios.catalog import DIAGNOSES
from scenarios.cli import main
from scenarios.crash_loop import DEPLOYMENT, POISON
from scenarios.world import PoisonedPlan, campaign

POISONED = INCIDENTS[4]


def test_only_the_poison_customers_reply_kills_its_analyzer() -> None:
    plan = PoisonedPlan.around(FaultPlan(seed=3), POISON)
    poison = reply_for(3, POISON.address)
    with pytest.raises(WorkerCrashed, match="Segmentation fault"):
        plan.decide("sentiment", poison, 1)
    with pytest.raises(WorkerCrashed):
        plan.decide("sentiment", poison, 7)  # every time
    # Its other calls, another reply, another seed's reply: decided as the plain plan decides.
    for service, subject in (
        ("sendgrid", POISON.address),
        ("sentiment", reply_for(3, "someone.else@example.com")),
        ("sentiment", reply_for(4, POISON.address)),
    ):
        assert plan.decide(service, subject, 1) == FaultPlan(seed=3).decide(service, subject, 1)


def test_the_poison_customer_is_in_the_campaign_once_where_declared() -> None:
    emails = campaign(POISONED, POISONED.quick)
    assert emails.count(POISON.address) == 1 and emails[POISON.position] == POISON.address
    assert len(emails) == POISONED.quick.jobs
    assert POISON.address not in campaign(INCIDENTS[1], POISONED.quick)


def test_a_dead_worker_comes_back_after_a_doubling_back_off() -> None:
    assert [DEPLOYMENT.restart_after(n) for n in (1, 2, 3)] == [10.0, 20.0, 40.0]
    assert DEPLOYMENT.restart_after(20) == DEPLOYMENT.restart_cap
    assert INCIDENTS[1].deployment.restart_after(3) == 0.0  # the harness's: at once


def test_every_drill_is_declared_once_and_listed_in_the_readme_and_the_help() -> None:
    assert sorted(DIAGNOSES) == sorted(INCIDENTS) == list(range(1, len(INCIDENTS) + 1))
    readme = (PROJECT_ROOT / "README.md").read_text()
    help_text = CliRunner().invoke(main, ["--help"]).output
    for number, diagnosis in DIAGNOSES.items():
        assert diagnosis.incident is INCIDENTS[number]
        wrong = set(diagnosis.question.letters) - {diagnosis.question.right}
        assert set(diagnosis.refutations) == wrong  # each wrong answer is told why not
        assert f"scenarios {number} " in readme, f"the README's drills lack {number}"
        assert f"{number}  {INCIDENTS[number].title}" in help_text


def _solution(tmp_path: Path, *, reaper: bool) -> Path:
    """The reference, with or without its Task F."""
    source = REFERENCE_PATH.read_text()
    if not reaper:
        source = source.replace("async def recover_stalled_jobs(", "async def _not_written(")
    path = tmp_path / ("with_reaper.py" if reaper else "without_reaper.py")
    path.write_text(source)
    return path


def test_the_solutions_reaper_runs_in_drill_4_or_is_said_to_be_missing(
    backend: str, tmp_path: Path
) -> None:
    def drill(solution: Path, duration: float) -> tuple[int, str]:
        result = CliRunner().invoke(
            main,
            ["4", "--solution-path", str(solution), "--db", base_config(backend).url,
             "--jobs", str(POISONED.quick.jobs), "--duration", f"{duration:g}", "--no-input"],
            env={"KATA_HOME": str(tmp_path / "home"), "COLUMNS": "200"},
        )  # fmt: skip
        return result.exit_code, " ".join(result.output.split())

    # Long enough for the job to kill MAX_ATTEMPTS workers and be failed.
    code, output = drill(_solution(tmp_path, reaper=True), POISONED.quick.duration)
    assert code == 0, output
    assert "does not show incident 4's flaw" in output
    assert f"killed {MAX_ATTEMPTS} workers, then the reaper failed it" in output

    # A return or two is enough to see that nothing counts them.
    code, output = drill(_solution(tmp_path, reaper=False), 2.0)
    assert code == 1, output
    assert "shows incident 4's flaw" in output
    assert "recover_stalled_jobs (Task F) is not written yet" in output
