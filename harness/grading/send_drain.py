"""Task G's drain: workers that ask the candidate's ``reserve_send_slot`` before every send, and
then send with the harness's own correct send, against SendGrid's account-wide bucket.

What a worker does, the same in the grading process and in a spawned worker process:

    for each job it takes from the drain's one queue, up to MAX_ATTEMPTS tries:
        await reserve_send_slot(worker_id)              # the candidate's: returns when it may send
        send_email(job.email, body, "job-{id}-send_email")   # the harness's: one key per job
        on a 429: record its reset in send_rate.paused_until, wait retry_after (counted from
                  when the 429 arrived), and try again

So Task C's rules hold on every send by construction (one key per job and step, the same body on
every try, retry_after honoured, one budget of MAX_ATTEMPTS tries), and a bug in Task C never fails
Task G. What is recorded is plain data (wall-clock times, names, counts) that a worker process
can send back: each reservation (when it was asked for, when it returned, how many statements it
made) and each send (when it reached SendGrid, and whether it was refused). ``send_judge`` reads
the verdict from them.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any

from ..exceptions import RateLimitError
from ..scope import acting_as, current, scoped
from ..sql.database import Database
from ..sql.models import MAX_ATTEMPTS
from ..world.account import SEND_RATE_PER_SECOND, SendAccount
from ..world.services import send_email

__all__ = [
    "DrainLog",
    "Reservation",
    "Sent",
    "Stalls",
    "Start",
    "StatementCounter",
    "job",
    "jobs_for",
    "record_pause",
    "send_jobs",
    "set_up_account",
    "taking",
]

INTERVAL = 1 / SEND_RATE_PER_SECOND

Reserve = Callable[[str], Awaitable[Any]]


@dataclass(frozen=True)
class Reservation:
    """One call of ``reserve_send_slot``: wall-clock times, and the statements it made."""

    worker: str
    #: The process the worker runs in ("process 1"), or its copy of the module.
    group: str
    called: float
    returned: float
    statements: int
    #: The worker's first reservation of the run (twenty arriving at once may contend).
    first: bool


@dataclass(frozen=True)
class Sent:
    """One send that reached SendGrid, at wall-clock ``at``; ``refused``: answered 429."""

    worker: str
    group: str
    job: int
    at: float
    refused: bool
    retry_after: float = 0.0
    #: Seconds the sender's process had been stalled before ``at`` since the drain began (its
    #: event loop could not run: a busy machine), which its sends are not held to.
    stalled: float = 0.0


@dataclass
class DrainLog:
    """What the workers of one process (or of all of them, merged) did."""

    reservations: list[Reservation] = field(default_factory=list)
    sends: list[Sent] = field(default_factory=list)
    #: The first error a worker met, in the candidate's terms (the others stop after it).
    error: str | None = None

    def merge(self, other: DrainLog) -> None:
        self.reservations += other.reservations
        self.sends += other.sends
        self.error = self.error or other.error

    def account_for(self, stalls: Stalls) -> None:
        """Note on each send how long its process had been stalled before it."""
        self.sends = [replace(send, stalled=stalls.before(send.at)) for send in self.sends]

    def to_data(self) -> dict[str, Any]:
        """Plain data, to send back from a worker process."""
        return {
            "reservations": [vars(r) for r in self.reservations],
            "sends": [vars(s) for s in self.sends],
            "error": self.error,
        }

    @classmethod
    def from_data(cls, data: dict[str, Any]) -> DrainLog:
        return cls(
            [Reservation(**r) for r in data["reservations"]],
            [Sent(**s) for s in data["sends"]],
            data["error"],
        )


@dataclass(frozen=True)
class Start:
    """The account as a test set it up: at wall-clock ``at``, free from ``free_at`` on (later
    than ``at`` when sends were already booked by another process)."""

    at: float
    free_at: float


#: Seconds the account has been idle when a test starts on a fresh one: a bucket that holds more
#: than ``BURST`` tokens would have filled up (the rule is a bucket of at most ``BURST``).
IDLE = 1.0


async def set_up_account(
    database: Database, account: SendAccount, *, workers: int, booked: int = 0
) -> Start:
    """The limiter's state and SendGrid's bucket, in step, now. Without ``booked``, the account
    has been idle for ``IDLE`` seconds; with it, that many sends of another process hold the
    next moments, as the row and ``send_slots`` both say, and SendGrid's bucket fills again
    when they are spent."""
    now = time.time()
    first = math.ceil(now * SEND_RATE_PER_SECOND)
    if booked:
        free_at = (first + booked) / SEND_RATE_PER_SECOND
        tokens, counted_at, next_send_at = 1 - (free_at - now) * SEND_RATE_PER_SECOND, now, free_at
    else:
        free_at, tokens, counted_at, next_send_at = now, 1.0, now - IDLE, now - IDLE
    with scoped(latency=False):
        await database.run("DELETE FROM send_slots")
        await database.run("DELETE FROM send_rate")
        await database.run(
            "INSERT INTO send_rate (id, tokens, refilled_at, next_send_at, paused_until, version) "
            "VALUES (1, ?, ?, ?, 0, 0)",
            [tokens, counted_at, next_send_at],
        )
        if booked:
            marks = ", ".join("(?, ?)" for _ in range(booked))
            params = [v for slot in range(first, first + booked) for v in (slot, "another-process")]
            await database.run(f"INSERT INTO send_slots (slot, worker_id) VALUES {marks}", params)
    account.reset(workers=workers, at=now)
    if booked:
        account.spent_until(free_at, now=now)
    return Start(at=now, free_at=free_at)


async def record_pause(database: Database, reset_at: float) -> None:
    """What the harness does when SendGrid answers 429: the whole account waits until
    ``reset_at``, and every limiter reads it in ``send_rate.paused_until``."""
    greatest = "GREATEST" if database.dialect == "postgresql" else "MAX"
    with scoped(latency=False):
        await database.run(
            f"UPDATE send_rate SET paused_until = {greatest}(paused_until, ?), "
            "version = version + 1 WHERE id = 1",
            [reset_at],
        )


class StatementCounter:
    """Counts the statements each worker makes while it is inside ``reserve_send_slot`` (every
    statement is one round trip: ``BEGIN`` and ``COMMIT`` too)."""

    def __init__(self, database: Database) -> None:
        self.database = database
        self._inside: dict[str, int] = {}

    @contextmanager
    def attached(self) -> Iterator[StatementCounter]:
        self.database.observers.append(self._seen)
        try:
            yield self
        finally:
            self.database.observers.remove(self._seen)

    def _seen(self, at: float, worker: str, *rest: Any) -> None:
        if worker in self._inside:
            self._inside[worker] += 1

    @contextmanager
    def reserving(self, worker: str) -> Iterator[list[int]]:
        """The block is one reservation of ``worker``; ``[count]`` once it ends."""
        counted: list[int] = []
        self._inside[worker] = 0
        try:
            yield counted
        finally:
            counted.append(self._inside.pop(worker, 0))


class Stalls:
    """How long the event loop could not run (a loaded machine): the drain's throughput is not
    held against the candidate for time the process itself was not given.

    Only a tick that comes back more than ``NOISE`` late counts: a busy loop, and a machine
    that hands the process a few milliseconds less now and then, make every tick a little late,
    and adding those up would excuse a limiter that is slow."""

    TICK = 0.01
    #: Lateness of a tick up to this is the loop's own jitter, not a stall.
    NOISE = 0.01

    def __init__(self) -> None:
        #: (wall-clock time the loop ran again, seconds it had been stalled), in order.
        self.stalls: list[tuple[float, float]] = []

    @property
    def total(self) -> float:
        return sum(seconds for _, seconds in self.stalls)

    def before(self, moment: float) -> float:
        """Seconds stalled before wall-clock ``moment``."""
        return sum(seconds for at, seconds in self.stalls if at <= moment)

    async def watch(self, stop: asyncio.Event) -> None:
        loop = asyncio.get_running_loop()
        while not stop.is_set():
            before = loop.time()
            await asyncio.sleep(self.TICK)
            late = loop.time() - before - self.TICK
            if late > self.NOISE:
                self.stalls.append((time.time(), late))


#: A job of the drain: its id (its idempotency key's) and its address.
Job = tuple[int, str]
#: Where a worker takes its next job from: None when there is none left.
Take = Callable[[], Job | None]


def job(number: int) -> Job:
    return number, f"customer-{number}@example.com"


def jobs_for(group: int, count: int) -> deque[Job]:
    """``count`` jobs for the ``group``-th queue: ids 1001, 1002, ... for the first, 2001, ...
    for the second, so that every job has its own key."""
    return deque(job(group * 1000 + n) for n in range(1, count + 1))


def taking(queue: deque[Job]) -> Take:
    """Take jobs from ``queue`` (shared by the workers of one process)."""
    return lambda: queue.popleft() if queue else None


def body_of(job: int) -> str:
    return f"Hi, campaign G has news for you (job {job})."


async def send_jobs(
    reserve: Reserve,
    worker: str,
    group: str,
    take: Take,
    log: DrainLog,
    counter: StatementCounter,
    *,
    stop: asyncio.Event,
    describe: Callable[[BaseException], str],
    paused: asyncio.Event | None = None,
    first: bool = True,
) -> None:
    """One worker of the drain: take jobs until there is none left (or ``stop``)."""
    loop = asyncio.get_running_loop()
    while not stop.is_set() and (taken := take()) is not None:
        number, email = taken
        for _ in range(MAX_ATTEMPTS):
            called = time.time()
            try:
                with counter.reserving(worker) as statements:
                    await reserve(worker)
            except Exception as error:
                log.error = log.error or describe(error)
                stop.set()
                return
            log.reservations.append(
                Reservation(worker, group, called, time.time(), statements[0], first)
            )
            first = False
            sent = time.time()
            try:
                with acting_as(worker, number):
                    await send_email(email, body_of(number), f"job-{number}-send_email")
            except RateLimitError as limited:
                arrived = loop.time()
                log.sends.append(Sent(worker, group, number, sent, True, limited.retry_after))
                database = current().database
                assert database is not None
                with acting_as(worker, number):
                    await record_pause(database, limited.reset_at)
                if paused is not None:
                    paused.set()
                await asyncio.sleep(max(0.0, limited.retry_after - (loop.time() - arrived)))
                continue
            log.sends.append(Sent(worker, group, number, sent, False))
            break
