"""What the graded tests use to drive a solution.

The harness sets up every precondition itself, with its own SQL: a Task C test gets a job that
the harness claimed, never one claimed by the candidate's ``claim_next_job``, so that a bug in one
task can never fail another task's tests. Every call into the candidate's code goes through
``Kata.call``, which records what the candidate is doing (for "timed out after N s while ...")
and attributes API calls to a worker and a job.
"""

from __future__ import annotations

import asyncio
import functools
import signal
import threading
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType
from typing import Any, TypeVar

import pytest

from ..context import acting_as
from ..database import Database
from ..exceptions import WorkerCrashed
from ..faults import FaultPlan
from ..ledger import Violation
from ..models import MAX_ATTEMPTS, Campaign, Job, JobStatus, JobTransition, Step
from ..orm import utcnow
from ..services import Services, use_services
from ..solutions import Solution
from .diagnosis import describe_violation, fail

__all__ = ["FAST", "FULL", "Kata", "LoopBlocked", "Sizes", "graded"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True, kw_only=True)
class Sizes:
    """How big the graded loads are. The fast tier gives watch mode an answer in seconds."""

    claim_jobs: int
    claim_trials: int
    claim_workers: int = 20
    claim_processes: int
    bulk_rows: int
    bulk_round_trips: int = 250
    e2e_jobs: int
    hypothesis_examples: int


FULL = Sizes(
    claim_jobs=2000,
    claim_trials=3,
    claim_processes=4,
    bulk_rows=50_000,
    e2e_jobs=300,
    hypothesis_examples=12,
)
FAST = Sizes(
    claim_jobs=300,
    claim_trials=1,
    claim_processes=2,
    bulk_rows=5_000,
    e2e_jobs=60,
    hypothesis_examples=3,
)


class LoopBlocked(BaseException):
    """Raised by the hard timeout when the event loop itself stopped turning."""

    def __init__(self, seconds: float, frame: FrameType | None):
        super().__init__(f"the event loop was blocked for {seconds:g} s")
        self.seconds = seconds
        self.frame = frame


@contextmanager
def _hard_timeout(seconds: float) -> Iterator[None]:
    """A last resort for code that blocks the loop (``time.sleep``, a busy loop), where
    ``asyncio.timeout`` can never fire: SIGALRM interrupts the main thread wherever it is."""
    if (
        not hasattr(signal, "setitimer")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return

    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise LoopBlocked(seconds, frame)

    previous = signal.signal(signal.SIGALRM, interrupt)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def graded(task: str, *, timeout: float = 30.0, full_only: bool = False) -> Callable[[F], F]:
    """Mark a test with its task and give it a time limit that reports what the candidate was
    doing, instead of hanging. ``full_only`` tests (processes, large loads) are left out of the
    fast tier that watch mode runs first."""

    def decorate(test: F) -> F:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> Any:
            kata: Kata | None = kwargs.get("kata")
            try:
                with _hard_timeout(timeout + 10):
                    async with asyncio.timeout(timeout) as limit:
                        return await test(*args, **kwargs)
            except TimeoutError:
                if not limit.expired():
                    raise
                doing = kata.phase if kata else "running the test"
                fail(f"timed out after {timeout:g} s while {doing}")

        marked = pytest.mark.task(task)(run)
        if full_only:
            marked = pytest.mark.full_only(marked)
        return marked  # type: ignore[return-value]

    return decorate


class Kata:
    """One graded test's world: the solution, a fresh database, the fake services."""

    def __init__(
        self,
        solution: Solution,
        database: Database,
        services: Services,
        *,
        seed: int,
        sizes: Sizes,
        tier: str,
    ) -> None:
        self.solution = solution
        self.database = database
        self.services = services
        self.seed = seed
        self.sizes = sizes
        self.tier = tier
        self.phase = "setting up"
        self.current_function: str | None = None

    # --- world building (the harness's own SQL, never the candidate's) ----------------------

    @contextmanager
    def faults(self, plan: FaultPlan) -> Iterator[Services]:
        """Swap in services with ``plan`` for the block."""
        previous = self.services
        self.services = Services(plan)
        try:
            with use_services(self.services):
                yield self.services
        finally:
            self.services = previous

    async def campaign(self, name: str = "Spring launch") -> Campaign:
        return await Campaign.create(name=name)

    async def add_jobs(self, campaign_id: int, emails: list[str], **fields: Any) -> list[Job]:
        """Insert jobs directly (batched), with optional field values for all of them."""
        columns = ["campaign_id", "email", *fields]
        jobs: list[Job] = []
        for start in range(0, len(emails), 500):
            batch = emails[start : start + 500]
            marks = ", ".join("(" + ", ".join("?" for _ in columns) + ")" for _ in batch)
            params = [v for email in batch for v in (campaign_id, email, *fields.values())]
            rows = await self.database.run(
                f"INSERT INTO jobs ({', '.join(columns)}) VALUES {marks} RETURNING *", params
            )
            jobs += [Job.from_row(row) for row in rows.rows]
        return sorted(jobs, key=lambda job: job.id)

    async def running_job(
        self,
        email: str = "ada@example.com",
        worker: str = "worker-1",
        campaign_id: int | None = None,
    ) -> Job:
        """A job the harness created and claimed for ``worker``, as Task A would have."""
        if campaign_id is None:
            campaign_id = (await self.campaign()).id
        (job,) = await self.add_jobs(campaign_id, [email])
        return await self.claim_for(job.id, worker)

    async def claim_for(self, job_id: int, worker: str) -> Job:
        now = utcnow()
        await Job.filter(id=job_id).update(
            status=JobStatus.RUNNING, worker_id=worker, claimed_at=now
        )
        return await Job.get(id=job_id)

    async def expire_claim(self, job_id: int, worker: str | None) -> None:
        """What the lease does to a worker that stopped renewing its claim: the job goes back to
        the queue, and the ledger notes it (the one excuse for a second worker's early retry)."""
        await Job.filter(id=job_id, status=JobStatus.RUNNING).update(status=JobStatus.PENDING)
        self.services.ledger.record_recovery(job_id, worker)

    async def fresh(self, job: Job | int) -> Job:
        return await Job.get(id=job if isinstance(job, int) else job.id)

    async def transitions(self, job_id: int) -> list[JobTransition]:
        return await JobTransition.filter(job_id=job_id).order_by("id").all()

    # --- calling the candidate ---------------------------------------------------------------

    async def call(
        self, function: str, *args: Any, worker: str | None = None, job_id: int | None = None
    ) -> Any:
        """Call one of the solution's functions as ``worker`` (on ``job_id``)."""
        shown = ", ".join(repr(a) if not isinstance(a, (list, Job)) else _short(a) for a in args)
        self.phase = f"waiting for {function}({shown})"
        self.current_function = function
        with acting_as(worker, job_id):
            result = await getattr(self.solution, function)(*args)
        self.phase = f"after {function}({shown}) returned"
        return result

    # --- drivers that accept every correct style ---------------------------------------------

    async def drive_send_email_step(
        self, job: Job, worker: str = "worker-1", max_rounds: int = MAX_ATTEMPTS + 3
    ) -> Job:
        """Call ``send_email_step`` until the job settles: message recorded, failed, or — for a
        solution that returns the job to the queue — re-claimed by the harness once its
        ``run_after`` has come, as a worker would."""
        for _ in range(max_rounds):
            attempts = job.attempts  # before the call: the candidate may update the object it gets
            await self.call("send_email_step", job, worker=worker, job_id=job.id)
            fresh = await self.fresh(job)
            if fresh.status == JobStatus.FAILED or fresh.message_id:
                return fresh
            if fresh.status == JobStatus.PENDING:
                await self._wait_for_run_after(fresh, attempts_before=attempts)
                job = await self.claim_for(fresh.id, worker)
                continue
            fail(
                f"send_email_step returned with job {fresh.id} still {fresh.status.value}, no "
                "message_id recorded, not failed and not returned to the queue (pending) — the "
                "email was neither sent nor given up on"
            )
        fail(
            f"job {job.id} was still not settled after {max_rounds} rounds of send_email_step: "
            f"more tries than MAX_ATTEMPTS ({MAX_ATTEMPTS}) allows"
        )

    async def _wait_for_run_after(self, job: Job, attempts_before: int) -> None:
        if job.attempts <= attempts_before:
            fail(
                f"job {job.id} went back to the queue without counting the attempt "
                f"(attempts stayed {job.attempts}) — retries would never end"
            )
        delay = (job.run_after - utcnow()).total_seconds()
        if delay > 30:
            fail(
                f"job {job.id} went back to the queue with run_after {delay:.0f} s away — "
                "backoff should start small (a fraction of a second) and honour retry_after"
            )
        self.phase = f"waiting {max(delay, 0):.2f} s for job {job.id}'s run_after"
        await asyncio.sleep(max(delay, 0) + 0.01)

    async def process_until_settled(
        self, job: Job, worker: str = "worker-1", max_rounds: int = 4 * (MAX_ATTEMPTS + 3)
    ) -> Job:
        """The contract's worker loop for one job, with the harness's crash recovery: after a
        crash the job is returned to the queue (its lease ran out) and claimed by a new worker."""
        generation = 0
        attempts = job.attempts
        for _ in range(max_rounds):
            fresh = await self.fresh(job)
            if fresh.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                return fresh
            if fresh.status == JobStatus.PENDING:
                if fresh.attempts > attempts:  # returned to the queue to retry, not after a crash
                    await self._wait_for_run_after(fresh, attempts_before=attempts)
                generation += 1
                worker = f"{worker.split('#')[0]}#{generation}"
                fresh = await self.claim_for(fresh.id, worker)
            elif fresh.worker_id != worker:
                worker = fresh.worker_id or worker
            job = fresh
            attempts = (
                fresh.attempts
            )  # before the call: the candidate may update the object it gets
            try:
                await self.call("process_job", fresh, worker=worker, job_id=fresh.id)
            except WorkerCrashed:
                # The worker died mid-step; its lease runs out and the job goes back to the queue.
                await self.expire_claim(fresh.id, worker)
        final = await self.fresh(job)
        fail(
            f"job {final.id} was still {final.status.value} at step {final.step.value} after "
            f"{max_rounds} calls of process_job — it does not advance"
        )

    # --- checks ------------------------------------------------------------------------------

    def assert_no_violations(self) -> None:
        violations: list[Violation] = self.services.ledger.violations
        if violations:
            more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
            fail(describe_violation(violations[0]) + more)

    async def assert_advanced_once(self, job: Job) -> None:
        """The step only moved forward, one step at a time, each step exactly once."""
        order = list(Step)
        seen: set[tuple[Step, Step]] = set()
        for t in await self.transitions(job.id):
            if t.old_step == t.new_step:
                continue
            if order.index(t.new_step) < order.index(t.old_step):
                fail(
                    f"job {job.id} went backwards from {t.old_step.value} to {t.new_step.value} "
                    f"(by {t.worker_id}) — a stale job object was saved over newer progress"
                )
            if (t.old_step, t.new_step) in seen:
                fail(
                    f"job {job.id} advanced from {t.old_step.value} to {t.new_step.value} twice "
                    "— the advance is not a compare-and-set on the current step"
                )
            seen.add((t.old_step, t.new_step))

    def deliveries_for(self, job: Job) -> int:
        return len(self.services.ledger.deliveries_to(job.email))

    def actions_for(self, job: Job) -> int:
        return sum(1 for a in self.services.ledger.actions if a.email == job.email)


def _short(value: Any) -> str:
    if isinstance(value, Job):
        return f"<job {value.id} {value.step.value}>"
    return f"<{len(value)} items>"


def ago(seconds: float) -> Any:
    return utcnow() - timedelta(seconds=seconds)
