"""A worker that kept going after it was killed: where its code caught the crash, what it did.

The harness kills a worker by raising ``WorkerCrashed``, a ``BaseException``, as ``kill -9`` would
stop a process. Code that catches ``BaseException`` (or has a bare ``except:``) swallows it and
carries on: it retries, writes, even completes the job — things a dead process never does, and
which a real crash would leave undone. The crash plan notes what the worker did inside its life
(``harness.world.crashes.worker_life``); this module turns that into a diagnosis:

    "worker-1 kept going after it was killed (WorkerCrashed, a BaseException, was caught at
    solution.py:41: `except BaseException:`): ..."
"""

from __future__ import annotations

import ast
import linecache
from pathlib import Path

from ..world.crashes import WorkerLife
from ..world.ledger import Ledger
from .diagnosis import candidate_frames

__all__ = ["kept_going"]

#: Exception names whose handler catches a crash: a bare ``except:`` does too.
_CATCHES_A_CRASH = frozenset({"BaseException", "WorkerCrashed"})


def kept_going(life: WorkerLife, solution: Path, ledger: Ledger, *, returned: bool) -> str | None:
    """The diagnosis when the worker of ``life`` caught its crash and acted after it (or
    ``process_job`` returned normally although it was killed); None when it died as a killed
    process does. A crash that went on up through a ``finally:`` that wrote is not held against
    the candidate: the contract forbids catching the crash, and nothing was caught."""
    crash, error = life.killed, life.error
    if crash is None or error is None:
        return None
    handler = _handler_that_caught(error, solution)
    if not returned and handler is None:
        return None
    calls = [
        (c.at, f"called {c.operation}")
        for c in ledger.calls
        if c.caller == crash.caller and c.job_id == crash.job_id and c.at > crash.at
    ]
    deeds = list(dict.fromkeys(deed for _, deed in sorted([*life.afterlife, *calls])))
    if returned:
        deeds.append("process_job returned as if nothing had happened")
    if not deeds:
        return None
    return (
        f"{crash.caller} kept going after it was killed (WorkerCrashed, a BaseException, was "
        f"caught{handler or _where_swallowed(error, solution)}): it was killed {crash.point}, then "
        f"{', then '.join(deeds)} — a killed process does nothing more, and work it pretends to "
        "finish is lost in a real crash: never catch BaseException (nor use a bare except:); "
        "use except Exception"
    )


def _handler_that_caught(error: BaseException, solution: Path) -> str | None:
    """`` at solution.py:41: `except BaseException:``` — the candidate's handler, around a line
    that ``error`` went through, that catches a crash; None when there is none."""
    # Innermost first: the handler nearest to the crash is the one that caught it.
    for frame in reversed(candidate_frames(error, solution)):
        assert frame.lineno is not None
        handler = _broad_handler_around(str(solution.resolve()), frame.lineno)
        if handler is not None:
            return _at(solution, handler)
    return None


def _where_swallowed(error: BaseException, solution: Path) -> str:
    """Where the crash stopped in the candidate's code when no handler of theirs names it
    (``contextlib.suppress``, ``gather(return_exceptions=True)``, ...); "" when nowhere."""
    frames = candidate_frames(error, solution)
    if not frames:
        return ""
    assert frames[0].lineno is not None
    return _at(solution, frames[0].lineno)


def _at(solution: Path, lineno: int) -> str:
    line = linecache.getline(str(solution.resolve()), lineno).strip()
    return f" at {solution.name}:{lineno}" + (f": `{line}`" if line else "")


def _broad_handler_around(path: str, lineno: int) -> int | None:
    """The line of the innermost handler catching ``BaseException`` of a ``try`` whose body
    holds line ``lineno``."""
    found: tuple[int, int] | None = None  # (the try's first line, the handler's line)
    for start, end, handler in _broad_handlers(path):
        if start <= lineno <= end and (found is None or start > found[0]):
            found = (start, handler)
    return found[1] if found else None


def _broad_handlers(path: str) -> tuple[tuple[int, int, int], ...]:
    """(first line of the try body, its last line, the handler's line) for every handler in the
    file that catches ``BaseException``. Parsed afresh: watch mode grades each save."""
    try:
        tree = ast.parse(Path(path).read_text(), path)
    except (OSError, SyntaxError):
        return ()
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Try | ast.TryStar) and node.body:
            start, end = node.body[0].lineno, node.body[-1].end_lineno or node.body[-1].lineno
            for handler in node.handlers:
                if _catches_a_crash(handler.type):
                    found.append((start, end, handler.lineno))
    return tuple(found)


def _catches_a_crash(caught: ast.expr | None) -> bool:
    if caught is None:
        return True
    if isinstance(caught, ast.Tuple):
        return any(_catches_a_crash(element) for element in caught.elts)
    if isinstance(caught, ast.Name):
        return caught.id in _CATCHES_A_CRASH
    if isinstance(caught, ast.Attribute):
        return caught.attr in _CATCHES_A_CRASH
    return False
