"""Task G's drain in separate OS processes: the contract's "twenty workers in four processes".

Each process loads the solution from its path (guarded as in the grading process), opens its own
pool to the test's database, and runs its workers (``send_drain``) over the drain's one queue
(a counter every process takes the next job from, as they would from the jobs table), against
the one SendGrid account every process shares (``SendAccount``: a file they all lock).
The processes start one after the other, as a deployment starts them: each one's first worker
reserves and sends once, in turn, and then all twenty go. What they did comes back as plain data,
merged for ``send_judge``.

The grading process waits until every process is ready (solution loaded, database open) before
it sets the account up, so that the drain's clock starts when the workers can start too.

The processes are forked from ``multiprocessing``'s fork server, which imports this module once
(a fresh process with one thread, so a fork of it is safe, unlike a fork of the grading process
with its drivers' threads): four processes start in a few hundredths of a second, where four
spawned ones would each import pytest and the harness again (seconds on a busy machine).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import multiprocessing
import os
import struct
import tempfile
import weakref
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

from ..scope import acting_as
from ..sql.config import DatabaseConfig
from ..sql.database import open_database
from ..worker.solutions import load_solution
from ..world.account import SendAccount
from ..world.faults import FaultPlan
from ..world.services import Services, use_services
from .diagnosis import describe_exception
from .kit import Kata
from .processes import worker_processes
from .send_drain import (
    DrainLog,
    Job,
    Stalls,
    Start,
    StatementCounter,
    Take,
    job,
    send_jobs,
    set_up_account,
    taking,
)
from .tamper import install_guard

__all__ = ["Counters", "drain_in_processes", "drain_one_process", "forked_processes"]

#: Imported before the guard, as in the grading process (see ``processes``).
_AS_IN_THE_GRADER = ("pytest",)
#: How often a process looks at the counters while it waits for its turn.
_POLL = 0.002

_READY, _GO, _TURN, _TAKEN = range(4)
_COUNTERS = struct.Struct("=4d")


class Counters:
    """A few numbers every process of a drain reads and adds to: how many are ready, whether
    to go, whose turn it is to start, how many jobs were taken. A file of the temporary
    directory, under ``flock``."""

    def __init__(self) -> None:
        fd, self.path = tempfile.mkstemp(prefix="kata-drain-", suffix=".counters")
        os.pwrite(fd, _COUNTERS.pack(0, 0, 0, 0), 0)
        os.close(fd)
        self._done = weakref.finalize(self, _unlink, self.path)

    def __getstate__(self) -> dict[str, Any]:
        return {"path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.path = state["path"]

    def get(self, which: int) -> float:
        return self._update(which, 0)

    def taker(self, jobs: int) -> Take:
        """Take the next of ``jobs`` jobs (ids 1001, 1002, ...), shared by every process."""

        def take() -> Job | None:
            taken = int(self._update(_TAKEN, 1))
            return job(1000 + taken) if taken <= jobs else None

        return take

    def add(self, which: int) -> float:
        return self._update(which, 1)

    def _update(self, which: int, by: float) -> float:
        fd = os.open(self.path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            values = list(_COUNTERS.unpack(os.pread(fd, _COUNTERS.size, 0)))
            values[which] += by
            if by:
                os.pwrite(fd, _COUNTERS.pack(*values), 0)
            return values[which]  # after the addition
        finally:
            os.close(fd)  # closing releases the lock


def _unlink(path: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)


@contextlib.contextmanager
def forked_processes(count: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``count`` processes forked from the fork server (which has this module
    imported), shut down after the block; killed instead of waited for when the block fails (a
    time limit, a blocked loop)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    with worker_processes(count, context) as pool:
        yield pool


async def _until(condition: Callable[[], bool]) -> None:
    while not condition():
        await asyncio.sleep(_POLL)


def drain_one_process(
    config: DatabaseConfig,
    solution_path: str,
    account: SendAccount,
    counters: Counters,
    index: int,
    processes: int,
    workers: int,
    sends: int,
) -> dict[str, Any]:
    """The ``index``-th process (from 1) of a drain: ``workers`` workers send from the drain's
    ``sends`` emails. Returns its ``DrainLog`` as plain data."""
    return asyncio.run(
        _drain(config, Path(solution_path), account, counters, index, processes, workers, sends)
    )


async def _drain(
    config: DatabaseConfig,
    path: Path,
    account: SendAccount,
    counters: Counters,
    index: int,
    processes: int,
    workers: int,
    sends: int,
) -> dict[str, Any]:
    for name in _AS_IN_THE_GRADER:
        importlib.import_module(name)
    install_guard(path)
    log = DrainLog()
    try:
        solution = load_solution(path)
    except BaseException as error:  # told in the candidate's terms; the others stop waiting
        log.error = describe_exception(error, path)
        counters.add(_READY)
        return log.to_data()

    async def reserve(worker: str) -> Any:
        with acting_as(worker):
            return await solution.reserve_send_slot(worker)

    def describe(error: BaseException) -> str:
        return describe_exception(error, path, "reserve_send_slot")

    group = f"process {index}"
    names = [f"p{index}-worker-{i + 1}" for i in range(workers)]
    take = counters.taker(sends)
    stop, quiet = asyncio.Event(), asyncio.Event()
    stalls = Stalls()
    async with open_database(config) as database:
        counter = StatementCounter(database)
        with use_services(Services(FaultPlan.none(), account=account)), counter.attached():
            counters.add(_READY)
            await _until(lambda: counters.get(_GO) > 0)
            watcher = asyncio.ensure_future(stalls.watch(quiet))
            try:
                await _until(lambda: counters.get(_TURN) >= index - 1)
                first = deque(one for one in [take()] if one is not None)
                try:
                    await send_jobs(
                        reserve,
                        names[0],
                        group,
                        taking(first),
                        log,
                        counter,
                        stop=stop,
                        describe=describe,
                    )
                finally:
                    counters.add(_TURN)  # the next process starts, whatever happened here
                await _until(lambda: counters.get(_TURN) >= processes or stop.is_set())
                await asyncio.gather(
                    *(
                        send_jobs(
                            reserve,
                            name,
                            group,
                            take,
                            log,
                            counter,
                            stop=stop,
                            describe=describe,
                            first=position > 0,
                        )
                        for position, name in enumerate(names)
                    )
                )
            finally:
                quiet.set()
                await watcher
    log.account_for(stalls)
    return log.to_data()


async def drain_in_processes(
    kata: Kata, *, processes: int, workers: int, sends: int
) -> tuple[DrainLog, Start]:
    """``processes`` processes of ``workers`` workers each send ``sends`` emails in all."""
    account = SendAccount(workers=processes * workers)
    counters = Counters()
    loop = asyncio.get_running_loop()
    kata.phase = (
        f"{processes} processes x {workers} workers sending {sends} emails through "
        "reserve_send_slot"
    )
    try:
        with forked_processes(processes) as pool:
            futures = [
                loop.run_in_executor(
                    pool,
                    drain_one_process,
                    kata.database.config,
                    str(kata.solution.path),
                    account,
                    counters,
                    index,
                    processes,
                    workers,
                    sends,
                )
                for index in range(1, processes + 1)
            ]
            while counters.get(_READY) < processes and not any(f.done() for f in futures):
                await asyncio.sleep(_POLL)
            start = await set_up_account(kata.database, account, workers=processes * workers)
            counters.add(_GO)
            results = await asyncio.gather(*futures)
    finally:
        account.close()
    log = DrainLog()
    for data in results:
        log.merge(DrainLog.from_data(data))
    return log, start
