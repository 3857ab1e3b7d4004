"""The public face: ``harness`` exports exactly what the kata's ``CONTRACT.md`` binds, plus the
few harness-level names documented in the README, and the candidate's stub has the contract's
signatures. The names are read from ``CONTRACT.md`` itself (its table of names and its block of
signatures), so the contract and the code cannot drift apart unnoticed."""

from __future__ import annotations

import ast
import inspect
import re

import harness
from harness.paths import PROJECT_ROOT
from harness.sql.models import Job, JobStatus, Step
from harness.worker.solutions import CANDIDATE_PATH

CONTRACT_PATH = PROJECT_ROOT / "CONTRACT.md"
# The binding contract the product's CONTRACT.md is written from; it sits beside the project in
# the kata's own workspace (and in CI). Elsewhere the product file is its own baseline.
SHARED_CONTRACT_PATH = PROJECT_ROOT.parent / "shared" / "CONTRACT.md"
# The table's stand-ins for "any model" and "any instance": their rows name methods of Job.
PLACEHOLDERS = {"Model", "obj"}
# Harness-level names the README documents on top of the contract.
DOCUMENTED_EXTRAS = {
    "Database",
    "DatabaseConfig",
    "HarnessError",
    "MultipleObjectsReturned",
    "PoolTimeout",
    "current_database",
    "current_transaction",
    "open_database",
}
JOB_FIELDS = [
    "id",
    "campaign_id",
    "email",
    "status",
    "step",
    "worker_id",
    "attempts",
    "last_error",
    "message_id",
    "sentiment",
    "action_id",
    "run_after",
    "claimed_at",
    "created_at",
    "updated_at",
]


# --- reading a contract ---------------------------------------------------------------------


def _section(text: str, heading: str) -> str:
    """The text under the first ``## `` heading that starts with ``heading``, up to the next."""
    match = re.search(rf"^## {re.escape(heading)}.*?$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"CONTRACT.md has no section '## {heading}...'"
    return match.group(1)


def table_entries(text: str) -> list[str]:
    """Every backticked entry in the first column of the table of names, e.g. ``Job``,
    ``await Model.get(**eq)``, ``db.dialect``."""
    entries: list[str] = []
    for line in _section(text, "What the harness gives").splitlines():
        cell = re.match(r"^\|\s*(`.*?)\s*\|", line)
        if cell:
            entries += re.findall(r"`([^`]+)`", cell.group(1))
    return entries


def _leading_name(entry: str) -> str:
    match = re.match(r"(?:await\s+)?([A-Za-z_]\w*)", entry)
    assert match, f"no name in the table entry {entry!r}"
    return match.group(1)


def contract_names(text: str) -> set[str]:
    """The names the table binds: ``db.dialect`` binds ``db``; ``Model.get`` binds no name."""
    names = {_leading_name(entry) for entry in table_entries(text)}
    return names - PLACEHOLDERS


def placeholder_methods(text: str) -> set[str]:
    """The methods the placeholder rows promise: ``filter``, ``get``, ``save``, ..."""
    methods: set[str] = set()
    for entry in table_entries(text):
        if _leading_name(entry) in PLACEHOLDERS:
            methods |= set(re.findall(r"(?:Model|obj)\.(\w+)", entry))
    return methods


def contract_signatures(text: str) -> dict[str, ast.AsyncFunctionDef]:
    """The four ``async def`` lines of the contract's python block, parsed."""
    block = re.search(r"```python\n(.*?)```", text, re.S)
    assert block, "CONTRACT.md has no ```python block of signatures"
    signatures: dict[str, ast.AsyncFunctionDef] = {}
    for line in block.group(1).splitlines():
        code = line.split("#")[0].strip()
        if code.startswith("async def"):
            (node,) = ast.parse(f"{code}: ...").body
            assert isinstance(node, ast.AsyncFunctionDef)
            signatures[node.name] = node
    return signatures


def _shape(node: ast.AsyncFunctionDef) -> tuple[list[tuple[str, str]], str]:
    params = [(a.arg, ast.unparse(a.annotation) if a.annotation else "") for a in node.args.args]
    return params, ast.unparse(node.returns) if node.returns else ""


CONTRACT = CONTRACT_PATH.read_text()
CONTRACT_NAMES = contract_names(CONTRACT)


# --- the contract as the product ships it ---------------------------------------------------


def test_the_contract_binds_the_names_and_the_four_functions() -> None:
    assert {"Job", "transaction", "execute_sql", "send_email", "MAX_ATTEMPTS"} <= CONTRACT_NAMES
    assert set(contract_signatures(CONTRACT)) == {
        "claim_next_job",
        "create_campaign_jobs",
        "send_email_step",
        "process_job",
    }


def test_the_product_contract_has_every_name_of_the_binding_contract() -> None:
    binding = SHARED_CONTRACT_PATH.read_text() if SHARED_CONTRACT_PATH.exists() else CONTRACT
    assert contract_names(binding) - CONTRACT_NAMES == set()
    assert placeholder_methods(binding) - placeholder_methods(CONTRACT) == set()
    ours = {name: _shape(node) for name, node in contract_signatures(CONTRACT).items()}
    theirs = {name: _shape(node) for name, node in contract_signatures(binding).items()}
    assert ours == theirs


def test_harness_exports_the_contract_and_only_documented_extras() -> None:
    for name in CONTRACT_NAMES:
        assert hasattr(harness, name), f"CONTRACT.md names {name}, harness does not export it"
    assert not CONTRACT_NAMES & DOCUMENTED_EXTRAS
    assert set(harness.__all__) == CONTRACT_NAMES | DOCUMENTED_EXTRAS
    assert harness.__all__ == sorted(harness.__all__, key=lambda n: (not n.isupper(), n))
    for name in harness.__all__:
        assert hasattr(harness, name), name


def test_the_models_have_the_methods_the_contract_table_promises() -> None:
    methods = placeholder_methods(CONTRACT)
    assert {"filter", "get", "create", "save", "refresh"} <= methods
    for method in methods:
        assert hasattr(Job, method), f"CONTRACT.md promises Model.{method}, Job has none"
    query = Job.filter(id=1)
    for method in ("order_by", "limit", "first", "all", "count", "update"):
        assert hasattr(query, method), method
    assert hasattr(Job, "from_row") and issubclass(Job.DoesNotExist, harness.DoesNotExist)


def test_service_errors_form_the_contract_hierarchy() -> None:
    for error in (
        harness.RateLimitError,
        harness.ServiceTimeoutError,
        harness.InvalidEmailError,
        harness.MessageNotFoundError,
        harness.IdempotencyKeyReusedError,
    ):
        assert issubclass(error, harness.ServiceError)
    assert issubclass(harness.ServiceTimeoutError, TimeoutError)
    transient = {harness.RateLimitError, harness.ServiceTimeoutError}
    permanent = {
        harness.InvalidEmailError,
        harness.MessageNotFoundError,
        harness.IdempotencyKeyReusedError,
    }
    assert all(e.transient for e in transient) and not any(e.transient for e in permanent)
    assert issubclass(harness.WorkerCrashed, BaseException)
    assert not issubclass(harness.WorkerCrashed, Exception)
    assert harness.MAX_ATTEMPTS == 5


def test_utcnow_is_timezone_aware_utc() -> None:
    now = harness.utcnow()
    assert now.tzinfo is not None and now.utcoffset() is not None
    assert now.utcoffset().total_seconds() == 0  # type: ignore[union-attr]


def test_enums_are_str_enums_with_the_contract_values() -> None:
    assert [s.value for s in Step] == ["send_email", "analyze", "take_action", "done"]
    assert {s.value for s in JobStatus} == {"pending", "running", "completed", "failed"}
    assert JobStatus.PENDING == "pending" and isinstance(Step.ANALYZE, str)


def test_job_has_the_contract_fields_in_order() -> None:
    assert list(Job._fields) == JOB_FIELDS
    fields = _section(CONTRACT, "What the harness gives").split("### Job fields", 1)[1]
    for name in JOB_FIELDS:
        assert f"`{name}`" in fields, f"CONTRACT.md's Job fields do not mention {name}"
    job = Job(campaign_id=1, email="ada@example.com")
    assert (job.status, job.step, job.attempts, job.worker_id) == (
        JobStatus.PENDING,
        Step.SEND_EMAIL,
        0,
        None,
    )


def test_the_stub_has_the_contract_signatures_and_raises_not_implemented() -> None:
    tree = ast.parse(CANDIDATE_PATH.read_text())
    functions = {n.name: n for n in tree.body if isinstance(n, ast.AsyncFunctionDef)}
    for name, signature in contract_signatures(CONTRACT).items():
        node = functions[name]
        assert _shape(node) == _shape(signature), name
        docstring = ast.get_docstring(node) or ""
        assert "challenge" in docstring and "grader checks" in docstring, name
        assert isinstance(node.body[-1], ast.Raise), name


def test_execute_sql_and_transaction_have_the_documented_shape() -> None:
    assert list(inspect.signature(harness.execute_sql).parameters) == ["sql", "params"]
    assert inspect.signature(harness.execute_sql).parameters["params"].default == ()


def test_the_readme_points_at_the_shipped_contract() -> None:
    readme = (PROJECT_ROOT / "README.md").read_text()
    assert "(CONTRACT.md)" in readme and CONTRACT_PATH.exists()


def test_the_stub_that_reset_restores_is_the_shipped_stub() -> None:
    """`python -m harness reset` restores harness/cli/pristine_solution.py: it must be the stub
    the project ships, or a reset would hand the candidate a different task statement. (In a
    tree where someone is doing the kata, restore the stub first: python -m harness reset all.)"""
    pristine = CANDIDATE_PATH.parent.parent / "harness" / "cli" / "pristine_solution.py"
    assert pristine.read_text() == CANDIDATE_PATH.read_text()
