"""Every command answers -h as it answers --help, and the drills' help says what each drill is."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

import setup_db
from harness.cli import main as harness_main
from scenarios import INCIDENTS
from scenarios.cli import main as scenarios_main


@pytest.mark.parametrize(
    "command",
    [harness_main, setup_db.main, scenarios_main],
    ids=["harness", "setup_db", "scenarios"],
)
def test_dash_h_is_help(command: object) -> None:
    short = CliRunner().invoke(command, ["-h"])  # type: ignore[arg-type]
    long = CliRunner().invoke(command, ["--help"])  # type: ignore[arg-type]
    assert short.exit_code == 0, short.output
    assert short.output == long.output


def test_the_drills_help_names_every_drill() -> None:
    output = CliRunner().invoke(scenarios_main, ["--help"]).output
    for number, incident in INCIDENTS.items():
        assert f"{number}  {incident.title}" in output
