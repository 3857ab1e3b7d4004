"""What Task G's tests share: SendGrid with an account-wide rate, the candidate's limiter called
as a worker (from the solution the grader loaded, or from another load of the same file, as
another process has), the drain in the grading process, and the diagnoses of what the fake
services saw.

Two loads of ``solution.py`` are two sets of module globals, as two processes have: a limiter
that keeps its state in the process (a counter, a lock, a bucket in a global) keeps one per
load, and the fast tier tells it without starting a process. The full tier runs real OS
processes too (``send_processes``).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Coroutine
from contextlib import ExitStack, asynccontextmanager
from typing import Any

from ..scope import acting_as
from ..sql.database import Database
from ..worker.solutions import Solution, load_solution
from ..world.account import SendAccount
from ..world.faults import FaultPlan
from ..world.ledger import ViolationKind
from ..world.services import Services
from .diagnosis import describe_exception, describe_violation
from .kit import Kata
from .send_drain import (
    DrainLog,
    Job,
    Reserve,
    Stalls,
    Start,
    StatementCounter,
    jobs_for,
    send_jobs,
    set_up_account,
    taking,
)
from .send_judge import FIRST_ANSWER_THROUGHPUT, judge_drain

__all__ = ["SendWorld", "drain_here"]


class SendWorld:
    """One G test's account: SendGrid's bucket, the services that enforce it, and the
    candidate's limiter as each worker calls it."""

    def __init__(self, kata: Kata, *, workers: int) -> None:
        self.kata = kata
        self.workers = workers
        self.account = SendAccount(workers=workers)
        self.services = Services(FaultPlan.none(), account=self.account)
        self.log = DrainLog()
        self.counter = StatementCounter(kata.database)
        self.stop = asyncio.Event()
        self._loads: dict[int, Solution] = {1: kata.solution}

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[Services]:
        """Make this world's SendGrid the test's, count the reservations' statements, and
        measure how long the event loop stalled, for the block."""
        stop = asyncio.Event()
        stalls = Stalls()
        with ExitStack() as stack:
            services = stack.enter_context(self.kata.serving(self.services))
            stack.enter_context(self.counter.attached())
            watcher = asyncio.ensure_future(stalls.watch(stop))
            try:
                yield services
            finally:
                stop.set()
                await watcher
                self.log.account_for(stalls)
                self.account.close()

    async def set_up(self, *, booked: int = 0) -> Start:
        """The account, set up now (after the pool is warm: the moments a test books must not
        pass while the workers wait for their first connections)."""
        await warm(self.kata.database, self.workers)
        return await set_up_account(
            self.kata.database, self.account, workers=self.workers, booked=booked
        )

    def reserve(self, load: int = 1) -> Reserve:
        """The candidate's ``reserve_send_slot`` as a worker calls it, from the ``load``-th
        load of the solution (the first is the grader's own)."""
        if load not in self._loads:
            self._loads[load] = load_solution(self.kata.solution.path)
        solution = self._loads[load]
        if load == 1:
            return lambda worker: self.kata.call("reserve_send_slot", worker, worker=worker)

        async def reserve(worker: str) -> Any:
            with acting_as(worker):
                return await solution.reserve_send_slot(worker)

        return reserve

    def describe(self, error: BaseException) -> str:
        return describe_exception(error, self.kata.solution.path, "reserve_send_slot")

    def worker(
        self,
        name: str,
        jobs: deque[Job],
        *,
        load: int = 1,
        group: str = "process 1",
        paused: asyncio.Event | None = None,
        first: bool = True,
    ) -> Coroutine[Any, Any, None]:
        """``name`` sending ``jobs``, each after a reservation of its own."""
        return send_jobs(
            self.reserve(load),
            name,
            group,
            taking(jobs),
            self.log,
            self.counter,
            stop=self.stop,
            describe=self.describe,
            paused=paused,
            first=first,
        )

    async def send_one_each(self, names: list[str], *, group: int = 1) -> None:
        """Each of ``names`` reserves and sends one email, all at once (their jobs are the
        ``group``-th queue's)."""
        jobs = jobs_for(group, len(names))
        await asyncio.gather(*(self.worker(name, deque([jobs.popleft()])) for name in names))

    def problem(self) -> str | None:
        """What went wrong that is not a matter of rate: an error, a violation."""
        if self.log.error:
            return self.log.error
        return violation(self.services)


async def warm(database: Database, workers: int) -> None:
    """Open the connections ``workers`` workers will use at once (a PostgreSQL pool opens them
    as they are first needed, tens of milliseconds each on a busy machine)."""
    count = min(workers, database.config.pool_size)
    ready = asyncio.Event()
    held = 0

    async def hold() -> None:
        nonlocal held
        async with database.connection():
            held += 1
            if held == count:
                ready.set()
            await ready.wait()

    await asyncio.gather(*(hold() for _ in range(count)))


def violation(services: Services) -> str | None:
    """The first violation the fake services saw, said for Task G."""
    for seen in services.ledger.violations:
        if seen.kind == ViolationKind.WAIT_IN_TRANSACTION:
            return (
                f"reserve_send_slot waited inside its transaction ({seen.detail}): the "
                "connection, and with it the lock on the account's state (on SQLite the whole "
                "database's write lock), stays held for the whole wait, so every other "
                "worker's reservation queues behind it — book the send's moment in a short "
                "transaction (or one statement), commit, and wait outside it"
            )
        return describe_violation(seen)
    return None


async def drain_here(
    kata: Kata, *, loads: int, workers: int, sends: int
) -> tuple[SendWorld, Start, str | None]:
    """``workers`` workers, spread over ``loads`` loads of the solution, send ``sends`` emails
    from one queue (as the jobs table is one). Each load's first worker reserves and sends
    once, one load after the other, as processes start; then every worker goes. Returns the
    world, its start and the verdict."""
    world = SendWorld(kata, workers=workers)
    per_load = workers // loads
    queue = jobs_for(1, sends)
    names = [
        [f"worker-{(load - 1) * per_load + i + 1}" for i in range(per_load)]
        for load in range(1, loads + 1)
    ]
    kata.phase = (
        f"{workers} workers in {loads} loads of the solution sending {sends} emails through "
        "reserve_send_slot"
    )
    async with world.serving():
        start = await world.set_up()
        for load in range(1, loads + 1):
            first = deque([queue.popleft()])
            await world.worker(names[load - 1][0], first, load=load, group=f"process {load}")
        await asyncio.gather(
            *(
                world.worker(name, queue, load=load, group=f"process {load}", first=index > 0)
                for load in range(1, loads + 1)
                for index, name in enumerate(names[load - 1])
            )
        )
    verdict = world.problem() or judge_drain(
        world.log,
        start,
        processes=f"each of the {loads} loads of solution.py (as processes)",
        throughput=FIRST_ANSWER_THROUGHPUT,
    )
    return world, start, verdict
