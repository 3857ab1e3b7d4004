"""Sleeps that stall the workers, caught at the line that makes them, by counting, not timing.

A solution's twenty workers share one event loop: ``time.sleep`` in it stalls them all, and
``asyncio.sleep`` inside ``transaction()`` holds a connection (and on SQLite the database's write
lock) for the whole wait. Measuring either would make the verdict depend on the machine's load, so
the grader wraps both functions and looks at who calls them:

* ``time.sleep`` with a frame of the solution's file on the stack, in a thread that runs an event
  loop, fails the running test at once, naming the line (a sleep in ``asyncio.to_thread`` blocks
  nothing and is left alone);
* ``asyncio.sleep`` called from the solution's file while the calling task holds a transaction is
  recorded as a ``WAIT_IN_TRANSACTION`` violation in the active services' ledger; the wait goes
  ahead, and the tests and the end-to-end judge report it like any other violation.

The plugin installs the guard before it loads the solution, so that ``from time import sleep``
at the top of the file gets the wrapper too, and only in the grading process (the spawned claim
processes of Task A sleep as usual).
"""

from __future__ import annotations

import asyncio
import functools
import os
import sys
import time
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from ..exceptions import NoActiveServices
from ..sql.transactions import current_transaction
from ..world.services import active_services
from .diagnosis import fail

__all__ = ["BlockingSleep", "SleepGuard"]


@dataclass(frozen=True, kw_only=True)
class BlockingSleep:
    """One ``time.sleep`` the solution made on the event loop's thread."""

    seconds: float
    file: str
    line: int
    function: str

    def diagnosis(self) -> str:
        return (
            f"time.sleep({self.seconds:g}) at {self.file}:{self.line} in {self.function}() "
            "blocks the event loop — all 20 workers stall while it sleeps: use "
            "await asyncio.sleep(...)"
        )


class SleepGuard:
    """Wraps ``time.sleep`` and ``asyncio.sleep`` for as long as it is installed."""

    def __init__(self, solution: Path) -> None:
        self.solution = solution.resolve()
        # co_filename is the path the file was loaded by: the resolved one, as load_solution does.
        self._files = frozenset({str(solution), str(self.solution)})
        self.blocking: list[BlockingSleep] = []
        self._pid = os.getpid()
        self._time_sleep = time.sleep
        self._asyncio_sleep = asyncio.sleep

    def install(self) -> None:
        @functools.wraps(self._time_sleep)
        def sleep(seconds: float) -> None:
            self._guarded_time_sleep(seconds, sys._getframe(1))

        @functools.wraps(self._asyncio_sleep)
        def asyncio_sleep(delay: float, result: Any = None) -> Coroutine[Any, Any, Any]:
            return self._guarded_asyncio_sleep(delay, result, sys._getframe(1))

        # A plain function that returns the coroutine: the check runs at the call, in the
        # caller's frame and task, even when the coroutine is handed to wait_for() or a task.
        setattr(time, "sleep", sleep)  # noqa: B010 - mypy knows time.sleep's exact type
        setattr(asyncio, "sleep", asyncio_sleep)  # noqa: B010

    def uninstall(self) -> None:
        setattr(time, "sleep", self._time_sleep)  # noqa: B010
        setattr(asyncio, "sleep", self._asyncio_sleep)  # noqa: B010

    def reset(self) -> None:
        self.blocking.clear()

    # -- the wrappers ---------------------------------------------------------------------------

    def _guarded_time_sleep(self, seconds: float, caller: FrameType) -> None:
        frame = self._solution_frame(caller) if self._watching() else None
        if frame is None or not _loop_runs_here():
            self._time_sleep(seconds)
            return
        call = BlockingSleep(
            seconds=seconds,
            file=self.solution.name,
            line=frame.f_lineno,
            function=frame.f_code.co_name,
        )
        self.blocking.append(call)
        # Failing at once, rather than sleeping, is what makes the verdict independent of time:
        # the plugin reports the first such call even if the solution swallows this exception.
        fail(call.diagnosis())

    def _guarded_asyncio_sleep(
        self, delay: float, result: Any, caller: FrameType
    ) -> Coroutine[Any, Any, Any]:
        # Only the direct caller counts: the harness's own waits (a busy SQLite retry under the
        # candidate's execute_sql, say) have the solution further down the stack, and are fine.
        if (
            self._watching()
            and caller.f_code.co_filename in self._files
            and current_transaction() is not None
        ):
            self._record_wait(delay, caller)
        return self._asyncio_sleep(delay, result)

    def _record_wait(self, delay: float, caller: FrameType) -> None:
        try:
            services = active_services()
        except NoActiveServices:
            return
        where = f"{self.solution.name}:{caller.f_lineno} in {caller.f_code.co_name}()"
        services.referee.record_wait_in_transaction(delay, where)

    # -- helpers --------------------------------------------------------------------------------

    def _watching(self) -> bool:
        return os.getpid() == self._pid

    def _solution_frame(self, frame: FrameType | None) -> FrameType | None:
        """The innermost frame of the solution's file on the stack, if any."""
        while frame is not None:
            if frame.f_code.co_filename in self._files:
                return frame
            frame = frame.f_back
        return None


def _loop_runs_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True
