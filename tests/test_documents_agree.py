"""The documents a candidate reads say the same thing: the README, ``CONTRACT.md``, the stub's
docstrings (the shipped ``candidate/solution.py`` and the pristine copy ``reset`` restores), the
hints and ``python -m harness dev -h``. Each test reads the wording one rule must have in every
one of them, and the numbers the grader holds a candidate to, from the grader's own constants.

The wording is compared with whitespace collapsed and Markdown's emphasis and backticks dropped,
so that reflowing a paragraph never fails a test, and changing a rule in one place does."""

from __future__ import annotations

import ast
import re

import pytest
from click.testing import CliRunner

from harness.cli import main
from harness.cli.board import KEYS
from harness.cli.hints import hint
from harness.cli.sources import PRISTINE_PATH
from harness.grading.kit import FULL
from harness.paths import PROJECT_ROOT
from harness.sql.database import MAX_PARAMETERS
from harness.sql.models import MAX_ATTEMPTS
from harness.tasks import TASKS
from harness.worker.solutions import CANDIDATE_PATH

README = (PROJECT_ROOT / "README.md").read_text()
CONTRACT = (PROJECT_ROOT / "CONTRACT.md").read_text()


def plain(text: str) -> str:
    """``text`` as the rules are compared: one space between words, no emphasis or backticks,
    lower case."""
    return re.sub(r"\s+", " ", re.sub(r"[*`]", "", text)).lower()


def docstring(path_text: str, function: str) -> str:
    tree = ast.parse(path_text)
    node = next(n for n in tree.body if isinstance(n, ast.AsyncFunctionDef) and n.name == function)
    return ast.get_docstring(node) or ""


STUBS = {"candidate/solution.py": CANDIDATE_PATH.read_text(), "pristine": PRISTINE_PATH.read_text()}


def stub_docstrings(function: str) -> dict[str, str]:
    return {f"{name}: {function}": docstring(text, function) for name, text in STUBS.items()}


def the_documents(*, stub: str | None = None, hints: str = "") -> dict[str, str]:
    """The README, the contract, the stub's docstring of ``stub`` (both copies) and the hints
    (level 2, the concept) of the tasks in ``hints``, by name."""
    documents = {"README.md": README, "CONTRACT.md": CONTRACT}
    if stub is not None:
        documents |= stub_docstrings(stub)
    for task in hints:
        documents[f"hint {task}2"] = hint(task, 2).text
    return documents


def missing(wording: str, documents: dict[str, str]) -> list[str]:
    return [name for name, text in documents.items() if plain(wording) not in plain(text)]


# --- the retry budget ---------------------------------------------------------------------------


def test_the_retry_budget_is_one_budget_per_step_everywhere() -> None:
    documents = the_documents(stub="send_email_step", hints="CD")
    assert missing("one budget per step", documents) == []
    for name, text in documents.items():
        other = re.search(r"budget per (call|attempt|kind|error|api)", plain(text))
        assert other is None, f"{name} says '{other.group(0)}', the others 'one budget per step'"


def test_the_budget_carries_across_calls_in_the_queue_style_everywhere() -> None:
    documents = the_documents(stub="send_email_step", hints="C")
    assert missing("in one call or across calls", documents) == []


def test_the_contract_says_what_attempts_holds_in_each_style() -> None:
    contract = plain(CONTRACT)
    assert "attempts carries the count across calls" in contract
    assert "retrying in the call, the count lives in the call" in contract
    assert "the grader does not check attempts" in contract
    assert "retrying in the call, the grader does not check it" in plain(README)


def test_retry_after_counts_from_when_the_429_arrived_everywhere() -> None:
    documents = the_documents(stub="send_email_step", hints="C")
    assert missing("counted from when the 429 arrived", documents) == []


def test_reset_at_is_in_the_readme_and_the_contract() -> None:
    for name, text in the_documents().items():
        assert "`reset_at`" in text or "`.reset_at`" in text, name
        assert "wall-clock" in plain(text[text.index("reset_at") :][:300]), name


def test_the_email_body_is_built_from_the_job_alone_everywhere() -> None:
    documents = the_documents(stub="send_email_step", hints="C")
    assert missing("from the job alone", documents) == []


# --- the tasks ----------------------------------------------------------------------------------


@pytest.mark.parametrize("task", TASKS, ids=lambda task: task.letter)
def test_every_task_is_introduced_in_the_readme_and_the_contract(task: object) -> None:
    letter, function = task.letter, task.function  # type: ignore[attr-defined]
    if function is not None:
        assert f"`{function}(" in README
        assert f"### {letter}. `{function}(" in CONTRACT
    else:
        assert f"**{letter}, {task.title}**" in README  # type: ignore[attr-defined]
        assert f"## Task {letter}: {task.title}" in CONTRACT  # type: ignore[attr-defined]


def test_why_e_can_pass_while_d_fails_is_said_in_the_readme_and_the_contract() -> None:
    assert missing("so E can pass while D fails", the_documents()) == []


# --- the numbers the grader holds a candidate to -----------------------------------------------


def test_the_grader_numbers_are_the_documents_numbers() -> None:
    assert (
        missing(f"{FULL.bulk_round_trips} round trips", the_documents(stub="create_campaign_jobs"))
        == []
    )
    assert missing(f"{MAX_PARAMETERS:,}", the_documents(stub="create_campaign_jobs")) == []
    assert missing("at most 30 s", the_documents()) == []
    assert missing("30 s in the future", stub_docstrings("send_email_step")) == []
    assert f"`MAX_ATTEMPTS` ({MAX_ATTEMPTS})" in README
    assert f"before the job is failed ({MAX_ATTEMPTS})" in CONTRACT


# --- the watch board's keys ---------------------------------------------------------------------


def test_dev_help_lists_every_key_of_the_board() -> None:
    result = CliRunner().invoke(main, ["dev", "-h"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for key, meaning in KEYS:
        assert f"{key} {meaning}" in plain(result.output), key


def test_the_readme_lists_every_key_of_the_board() -> None:
    line = next(line for line in README.splitlines() if line.startswith("python -m harness dev "))
    for key, meaning in KEYS:
        assert f"{key} = {meaning}" in line, key
