"""Reading and rewriting solution files by function: what ``reset``, ``solution`` and watch mode's
"which task did this save touch?" need.

The pristine stub is ``pristine_solution.py`` next to this module, a byte-for-byte copy of
``candidate/solution.py`` as shipped. The reference marks its tasks with ``# --- Task A ---``
comment lines.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

from ..tasks import FUNCTIONS, STRETCH, not_defined, not_started

__all__ = [
    "PRISTINE_PATH",
    "changed_tasks",
    "function_sources",
    "function_span",
    "reference_header",
    "reference_section",
    "restore_function",
    "stub_tasks",
    "syntax_problem",
]

PRISTINE_PATH = Path(__file__).with_name("pristine_solution.py")

_TASK_MARKER = re.compile(r"^# --- Task (?P<task>[A-Z]) -+\s*$", re.MULTILINE)


def function_span(source: str, name: str) -> tuple[int, int] | None:
    """Lines ``[start, end)`` (0-based) of the top-level function ``name`` with its decorators,
    or None when there is no such function. Works on a file that does not parse too, by
    indentation, since a candidate resets a task exactly when the file is in a mess."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return _span_by_indentation(source.splitlines(), name)
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            start = min([node.lineno, *(d.lineno for d in node.decorator_list)]) - 1
            assert node.end_lineno is not None
            return start, node.end_lineno
    return None


def _span_by_indentation(lines: list[str], name: str) -> tuple[int, int] | None:
    header = re.compile(rf"^(async\s+)?def\s+{re.escape(name)}\s*\(")
    for index, line in enumerate(lines):
        if header.match(line):
            start = index
            while start > 0 and lines[start - 1].startswith("@"):
                start -= 1
            end = index + 1
            while end < len(lines) and (not lines[end].strip() or lines[end][0] in " \t"):
                end += 1
            while end > index + 1 and not lines[end - 1].strip():
                end -= 1
            return start, end
    return None


def function_sources(source: str) -> dict[str, str] | None:
    """Source text of each top-level function, or None when the file does not parse."""
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return None
    return {
        node.name: ast.get_source_segment(source, node) or ""
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def changed_tasks(before: str | None, after: str) -> str:
    """The tasks (e.g. ``"AC"``) whose function differs between two versions of a solution;
    empty when unknown (no earlier version, a file that does not parse) or when only helpers
    changed, since a helper may serve any task."""
    old = function_sources(before) if before is not None else None
    new = function_sources(after)
    if old is None or new is None:
        return ""
    changed = {name for name in old.keys() | new.keys() if old.get(name) != new.get(name)}
    if not changed or changed - set(FUNCTIONS.values()):
        return ""
    return "".join(task for task, function in FUNCTIONS.items() if function in changed)


def stub_tasks(source: str) -> dict[str, str]:
    """The tasks the grader would call "not started", told from the source without running it:
    a task whose function is still the stub (a docstring and ``raise NotImplementedError``), and
    the end-to-end run when ``claim_next_job`` or ``process_job`` is. Maps task -> diagnosis, in
    the grader's words. Watch mode grades only the other tasks, which saves a database per test.
    """
    try:
        tree = ast.parse(source)
    except SyntaxError:
        return {}
    stubs = {
        node.name
        for node in tree.body
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and _is_stub(node)
    }
    found = {
        task: not_started(function) for task, function in FUNCTIONS.items() if function in stubs
    }
    for task in STRETCH:
        # An optional task's function may be left out altogether; a name that appears nowhere
        # (and no ``globals()`` that could bind it) is not defined. The grader says the same.
        function = FUNCTIONS[task]
        if function not in source and "globals()" not in source:
            found[task] = not_defined(function)
    blocking = [function for function in ("claim_next_job", "process_job") if function in stubs]
    if blocking:
        found["E"] = not_started(blocking[0])
    return found


def _is_stub(function: ast.FunctionDef | ast.AsyncFunctionDef) -> bool:
    body = function.body
    if (
        body
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    if len(body) != 1 or not isinstance(body[0], ast.Raise) or body[0].exc is None:
        return False
    raised = body[0].exc.func if isinstance(body[0].exc, ast.Call) else body[0].exc
    return isinstance(raised, ast.Name) and raised.id == "NotImplementedError"


def syntax_problem(source: str, filename: str) -> str | None:
    """A one-line description of why ``source`` does not compile, or None. Compiling runs none
    of the candidate's code, so watch mode can say this at once without grading."""
    try:
        compile(source, filename, "exec", dont_inherit=True)
    except SyntaxError as error:
        where = f"{Path(filename).name}:{error.lineno}" if error.lineno else Path(filename).name
        text = (error.text or "").strip()
        return f"{type(error).__name__} at {where}: {error.msg}" + (f" — `{text}`" if text else "")
    except (ValueError, RecursionError, MemoryError) as error:
        return f"{Path(filename).name} does not compile: {type(error).__name__}: {error}"
    return None


def restore_function(source: str, pristine: str, name: str) -> str:
    """``source`` with the function ``name`` replaced by its version in ``pristine``. A function
    missing from ``source`` is appended at the end."""
    span = function_span(pristine, name)
    if span is None:
        raise KeyError(f"the pristine stub has no function {name}()")
    stub = pristine.splitlines(keepends=True)[span[0] : span[1]]
    lines = source.splitlines(keepends=True)
    target = function_span(source, name)
    if target is None:
        tail = "" if not lines or lines[-1].endswith("\n") else "\n"
        return source + tail + "\n\n" + "".join(stub)
    if stub and not stub[-1].endswith("\n") and target[1] < len(lines):
        stub[-1] += "\n"
    return "".join(lines[: target[0]] + stub + lines[target[1] :])


def reference_section(reference: str, task: str) -> str:
    """The reference's code for ``task``: from its ``# --- Task X ---`` marker to the next."""
    markers = list(_TASK_MARKER.finditer(reference))
    for index, marker in enumerate(markers):
        if marker.group("task") == task:
            end = markers[index + 1].start() if index + 1 < len(markers) else len(reference)
            return reference[marker.start() : end].rstrip() + "\n"
    raise KeyError(f"the reference has no section for task {task}")


def reference_header(reference: str) -> str:
    """Everything before the first task: the module docstring and the imports."""
    first = _TASK_MARKER.search(reference)
    return (reference[: first.start()] if first else reference).rstrip() + "\n"
