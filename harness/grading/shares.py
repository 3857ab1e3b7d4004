"""Splitting a grading run into shares of about equal length (``--kata-shard I/N``).

Watch mode grades the fast tier as several shares at once (``harness.cli.shards``), and the
verdict is in when the slowest share ends; so shares are balanced by how long each test takes,
not by how many tests each holds. Most of a fast-tier test's time is the waits a correct solution
must make (``retry_after``, backoff), so the lengths are measured once on the reference and kept
in ``durations.json`` next to this module (``python -m harness.devtools.durations`` writes it).

The split depends on nothing but the tests and that file: the same tests go to the same share
every run, so the board's first diagnosis of a task is the same every run.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import TypeVar

__all__ = ["DURATIONS_PATH", "durations", "share"]

DURATIONS_PATH = Path(__file__).with_name("durations.json")

#: Seconds each test costs besides its measured call: a fresh database and the grader's checks.
_SETUP = 0.03

T = TypeVar("T")


@cache
def durations() -> dict[str, float]:
    """Each fast-tier test's name -> seconds it takes on the reference (empty if unmeasured)."""
    try:
        data = json.loads(DURATIONS_PATH.read_text())
    except (OSError, ValueError):
        return {}
    return {str(name): float(seconds) for name, seconds in data.get("tests", {}).items()}


def share(
    items: Sequence[T],
    index: int,
    count: int,
    *,
    name: Callable[[T], str],
    alone: Callable[[T], bool] = lambda item: False,
) -> list[T]:
    """The ``index``-th (from 1) of ``count`` shares of ``items``, in their order.

    The tests for which ``alone`` holds (the end-to-end test: as long as a whole share of the
    others) have the last share to themselves. The rest are dealt longest first, each to the
    share with the least time so far (ties to the first such share); a test that was never
    measured counts as the median measured one."""
    if count <= 1:
        return list(items)
    apart = [item for item in items if alone(item)]
    rest = [item for item in items if not alone(item)]
    if apart:
        if index == count:
            return apart
        count -= 1
    known = durations()
    usual = statistics.median(known.values()) if known else 0.0

    def length(item: T) -> float:
        return known.get(name(item), usual) + _SETUP

    loads = [0.0] * count
    chosen: set[int] = set()
    order = sorted(range(len(rest)), key=lambda position: (-length(rest[position]), position))
    for position in order:
        target = min(range(count), key=lambda share: (loads[share], share))
        loads[target] += length(rest[position])
        if target == index - 1:
            chosen.add(position)
    return [item for position, item in enumerate(rest) if position in chosen]
