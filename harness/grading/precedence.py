"""Which failure of a task is its first diagnosis: one rule, wherever and however the tests ran.

A task's tests are written from its most fundamental rule to its subtlest (Task A: an empty
queue gives None, what is claimable, the order, then the races). The first diagnosis of a task
is the one of its failing test that comes first in that declared order: its file (the task's own
file, then the write-path matrix), the line its test function starts on, and its parameters in
the order they are declared. ``pytest``, ``python -m harness grade`` and watch mode all choose
by this rank, so the same file, tier and seed get the same first diagnosis whatever share a
test ran in, whichever task watch mode graded first, and whichever result arrived first.

A rank is a plain list (it travels in the JSON and the event stream) and compares as a tuple.
"""

from __future__ import annotations

import inspect
from typing import TYPE_CHECKING, Any

from ..tasks import LETTERS

if TYPE_CHECKING:
    import pytest

__all__ = ["UNRANKED", "rank"]

#: The rank of a test the stream did not rank: after every ranked one.
UNRANKED: list[Any] = [len(LETTERS)]


def rank(item: pytest.Item, task: str) -> list[Any]:
    """``[task's place, file name, first line of the test function, parameter indices...]``."""
    place = LETTERS.index(task) if task in LETTERS else len(LETTERS)
    # The test as written, under its decorators (``graded`` wraps each one).
    function = inspect.unwrap(getattr(item, "function", None) or (lambda: None))
    code = getattr(function, "__code__", None)
    line = code.co_firstlineno if code is not None else item.location[1] or 0
    callspec = getattr(item, "callspec", None)
    indices = list(callspec.indices.values()) if callspec is not None else []
    return [place, item.path.name, line, *indices]
