"""Loading a solution file (the candidate's, the reference, or a catalogue entry) by path.

Each load gets a fresh module object under a unique name, so that two solutions graded in one
process never share module state, and a re-load after an edit sees the new code.
"""

from __future__ import annotations

import importlib.machinery
import importlib.util
import itertools
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from ..ownership import register_solution
from ..paths import PROJECT_ROOT
from ..tasks import FUNCTIONS, REQUIRED, not_defined

__all__ = [
    "CANDIDATE_PATH",
    "REFERENCE_PATH",
    "NotDefined",
    "Solution",
    "load_solution",
    "reference_functions",
]

CANDIDATE_PATH = PROJECT_ROOT / "candidate" / "solution.py"
REFERENCE_PATH = PROJECT_ROOT / "fixtures" / "solutions" / "reference.py"

_counter = itertools.count(1)


class _FromSource(importlib.machinery.SourceFileLoader):
    """Compiles the file on every load, never through a cached ``.pyc``: Python trusts a cached
    file whose source has the same size and the same modification time in whole seconds, so a
    save within a second of the last one that keeps the size (``<`` for ``>``) would be graded
    as the code before it."""

    def get_code(self, fullname: str) -> Any:
        return self.source_to_code(self.get_data(self.path), self.path)


@dataclass(frozen=True)
class Solution:
    """The functions of the contract, from one file: the four of A to D, and those of the
    stretch tasks (F, G), which a file may leave out."""

    path: Path
    module: ModuleType
    claim_next_job: Callable[[str], Awaitable[Any]]
    create_campaign_jobs: Callable[[int, list[str]], Awaitable[int]]
    send_email_step: Callable[[Any], Awaitable[None]]
    process_job: Callable[[Any], Awaitable[None]]
    recover_stalled_jobs: Callable[[float], Awaitable[int]] = field(
        default_factory=lambda: _undefined("recover_stalled_jobs")
    )
    reserve_send_slot: Callable[[str], Awaitable[None]] = field(
        default_factory=lambda: _undefined("reserve_send_slot")
    )

    @property
    def name(self) -> str:
        return self.path.stem


def load_solution(path: str | Path = CANDIDATE_PATH) -> Solution:
    """Import the file at ``path``; a missing function raises ``AttributeError`` naming it."""
    register_solution(path)  # its frames are the candidate's from now on, wherever it lies
    path = Path(path).resolve()
    name = f"kata_solution_{next(_counter)}_{path.stem}"
    spec = importlib.util.spec_from_file_location(name, path, loader=_FromSource(name, str(path)))
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load a solution from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise
    functions = {}
    for fn in FUNCTIONS.values():
        found = getattr(module, fn, None)
        if callable(found):
            functions[fn] = found
        elif fn in REQUIRED:
            raise AttributeError(f"{path.name} defines no function {fn}()")
        else:
            functions[fn] = _undefined(fn)
    return Solution(path=path, module=module, **functions)


class NotDefined(NotImplementedError):
    """Raised by a stretch task's function that the solution does not define: the grader says
    "not started", as it does of the stub."""

    def __init__(self, function: str) -> None:
        super().__init__(not_defined(function))
        self.function = function


def _undefined(function: str) -> Callable[..., Awaitable[Any]]:
    async def undefined(*args: Any, **kwargs: Any) -> Any:
        raise NotDefined(function)

    undefined.__name__ = function
    return undefined


def reference_functions() -> dict[str, Any]:
    """The reference's functions by name. A catalogue entry starts from them and replaces
    the one function whose classic mistake it demonstrates:

        globals().update(reference_functions())
        async def claim_next_job(worker_id): ...   # the mistake
    """
    reference = load_solution(REFERENCE_PATH)
    return {name: getattr(reference, name) for name in FUNCTIONS.values()}
