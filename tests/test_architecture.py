"""The tree keeps its shape: one context variable for a run's state, no import circle, the
product never leaning on the developers' tools, each task declared once."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

from harness.paths import PROJECT_ROOT

PRODUCT = ("harness", "scenarios")


def _modules() -> dict[str, Path]:
    found = {}
    for folder in PRODUCT:
        for path in (PROJECT_ROOT / folder).rglob("*.py"):
            parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
            found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path, *, local: bool) -> Iterator[str]:
    """The harness modules ``name`` imports when it loads (``local``: and inside functions);
    imports under ``if TYPE_CHECKING`` never run and do not count."""
    package = path.name == "__init__.py"

    def walk(body: list[ast.stmt], inside_function: bool) -> Iterator[str]:
        for node in body:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                continue
            if isinstance(node, ast.ImportFrom) and (local or not inside_function):
                base = node.module or ""
                if node.level:
                    here = name.split(".") if package else name.split(".")[:-1]
                    here = here[: len(here) - node.level + 1]
                    base = ".".join(here + ([node.module] if node.module else []))
                for alias in node.names:
                    full = f"{base}.{alias.name}"
                    yield full if full in MODULES else base
            elif isinstance(node, ast.Import) and (local or not inside_function):
                yield from (alias.name for alias in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list):
                    function = isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
                    yield from walk(inner, inside_function or function)

    tree = ast.parse(path.read_text())
    yield from (m for m in walk(tree.body, False) if m in MODULES and m != name)


def _cycle(local: bool) -> list[str] | None:
    graph = {name: set(_imports(name, path, local=local)) for name, path in MODULES.items()}
    state: dict[str, int] = {}  # 1: on the path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_no_import_circle_even_through_imports_inside_functions() -> None:
    assert _cycle(local=True) is None


def test_run_scoped_state_lives_in_one_context_variable() -> None:
    owners = [
        name
        for name, path in MODULES.items()
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Call) and ast.unparse(node.func).endswith("ContextVar")
    ]
    assert owners == ["harness.scope"]


def test_the_product_never_imports_the_developers_tools() -> None:
    leaning = [
        name
        for name, path in MODULES.items()
        if not name.startswith("harness.devtools")
        for imported in _imports(name, path, local=True)
        if imported.startswith("harness.devtools")
    ]
    assert leaning == []


def test_the_grader_does_not_lean_on_the_cli() -> None:
    leaning = [
        (name, imported)
        for name, path in MODULES.items()
        if name.startswith(("harness.grading", "harness.world", "harness.sql", "harness.worker"))
        for imported in _imports(name, path, local=True)
        if imported.startswith("harness.cli")
    ]
    assert leaning == []


def test_the_task_letters_are_spelled_out_only_in_the_registry() -> None:
    spelled = [
        name
        for name, path in MODULES.items()
        if name.startswith("harness") and name != "harness.tasks"
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant) and node.value in ("ABCDEFG", "ABCDE", "ABCD", "FG")
    ]
    assert spelled == []
