"""The worker runner: the loop of the contract, for the grader, ``dev`` and the scenarios.

    job = await claim_next_job(worker_id)
    while the job is still running for this worker and not done:
        await process_job(job)

N workers run as asyncio tasks on one event loop. A monitor task samples the system, returns
jobs whose claim is older than the lease to the queue (a crashed worker's job; with
``count_recoveries``, counting each return and failing a job whose workers died ``MAX_ATTEMPTS``
times), and detects the drain (every job completed or failed). A live worker renews its claim
with a heartbeat while it processes, as real queues do, so that only dead workers' jobs are
taken over; turning the heartbeat off lets a lease shorter than the slowest job hand live jobs
to a second worker (the flaw of scenario 2).

The runner never hangs on a candidate's mistake: a ``process_job`` that leaves the job unchanged
``stall_limit`` times in a row stops its worker with a diagnosis, a job that keeps raising stops
the run, and an overall deadline ends everything with the counts of what was left.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import traceback
from collections import Counter
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

from ..exceptions import WorkerCrashed
from ..paths import HARNESS_DIR
from ..scope import acting_as, caller_name, scoped
from ..sql.database import Database, current_database
from ..sql.models import Job, JobStatus, Step
from ..sql.orm import utcnow
from ..sql.queue import (
    RECOVER_COUNTING,
    RECOVER_EXPIRED,
    count_by_status,
    recover_counting_params,
)
from ..world import World
from ..world.crashes import CrashPlan
from ..world.metrics import RunMetrics, Sample
from ..world.services import Services
from .solutions import Solution

__all__ = ["CandidateError", "RunReport", "Runner", "RunnerConfig", "Stall"]

_HARNESS_DIR = str(HARNESS_DIR)

# Fields whose change counts as progress (claimed_at/updated_at change without real progress).
_PROGRESS_FIELDS = (
    "status",
    "step",
    "attempts",
    "run_after",
    "message_id",
    "sentiment",
    "action_id",
    "last_error",
    "worker_id",
)


@dataclass(frozen=True, kw_only=True)
class RunnerConfig:
    workers: int = 20
    #: Seconds after which a running job whose claim was not renewed is returned to pending.
    lease: float = 2.0
    heartbeat: bool = True
    idle_poll: float = 0.01
    monitor_interval: float = 0.05
    stall_limit: int = 5
    errors_per_job_limit: int = 3
    deadline: float = 120.0
    #: Whether the monitor counts each recovery in ``attempts`` and fails a job whose claim
    #: expired ``MAX_ATTEMPTS`` times (``RECOVER_COUNTING``), instead of returning it to the
    #: queue however often its workers die (``RECOVER_EXPIRED``).
    count_recoveries: bool = False

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise ValueError("workers must be at least 1")
        if self.lease <= 0 or self.deadline <= 0:
            raise ValueError("lease and deadline must be positive")


@dataclass(frozen=True)
class CandidateError:
    worker_id: str
    job_id: int | None
    step: str
    error: BaseException
    where: str  # "claim_next_job" or "process_job"

    def describe(self) -> str:
        frames = traceback.extract_tb(self.error.__traceback__)
        own = [f for f in frames if not f.filename.startswith(_HARNESS_DIR)]
        at = f" at {Path(own[-1].filename).name}:{own[-1].lineno}" if own else ""
        job = f" on job {self.job_id} ({self.step})" if self.job_id is not None else ""
        return f"{self.where}{job} raised {type(self.error).__name__}: {self.error}{at}"


@dataclass(frozen=True)
class Stall:
    worker_id: str
    job_id: int
    step: str
    times: int

    def describe(self) -> str:
        return (
            f"process_job returned {self.times} times without changing job {self.job_id} "
            f"(step {self.step}): it makes no progress, so {self.worker_id} was stopped"
        )


@dataclass
class RunReport:
    drained: bool
    deadline_hit: bool
    aborted: str | None
    counts: dict[str, int]
    metrics: RunMetrics
    candidate_errors: list[CandidateError] = field(default_factory=list)
    stalls: list[Stall] = field(default_factory=list)
    recovered: list[tuple[int, str | None]] = field(default_factory=list)
    #: Jobs the counting recovery failed instead of returning them (id, last holder).
    given_up: list[tuple[int, str | None]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.drained and not self.candidate_errors and not self.stalls

    def describe(self) -> str:
        if self.drained and self.ok:
            return f"drained: {self.counts}"
        parts = []
        if self.aborted:
            parts.append(self.aborted)
        if self.deadline_hit:
            parts.append(f"not drained by the deadline: {self.counts}")
        parts += [e.describe() for e in self.candidate_errors[:3]]
        parts += [s.describe() for s in self.stalls[:3]]
        return "; ".join(parts) or f"not drained: {self.counts}"


class Runner:
    """Runs a solution's workers in ``world`` (by default: the active database, with fresh
    services and no crashes) until the queue drains."""

    def __init__(
        self, solution: Solution, config: RunnerConfig | None = None, *, world: World | None = None
    ) -> None:
        self.solution = solution
        self.config = config or RunnerConfig()
        self.world = world or World(current_database())
        self.errors: list[CandidateError] = []
        self.stalls: list[Stall] = []
        self.recovered: list[tuple[int, str | None]] = []
        self.given_up: list[tuple[int, str | None]] = []
        self._errors_by_job: Counter[int] = Counter()
        self._drained = asyncio.Event()
        self._stop = asyncio.Event()
        self._aborted: str | None = None
        self._counts: dict[str, int] = {}

    @property
    def database(self) -> Database:
        return self.world.database

    @property
    def services(self) -> Services:
        return self.world.services

    @property
    def crash_plan(self) -> CrashPlan | None:
        return self.world.crash_plan

    @property
    def metrics(self) -> RunMetrics:
        return self.world.metrics

    async def run(self) -> RunReport:
        with self.world.active():
            await self._sample()  # a first sample, so a run that drains at once still has counts
            workers = [
                asyncio.create_task(self._worker(f"worker-{i + 1}"), name=f"worker-{i + 1}")
                for i in range(self.config.workers)
            ]
            monitor = asyncio.create_task(self._monitor(), name="kata-monitor")
            deadline_hit = False
            try:
                async with asyncio.timeout(self.config.deadline):
                    await asyncio.gather(*workers)
            except TimeoutError:
                deadline_hit = not self._drained.is_set()
            finally:
                self._stop.set()
                for task in workers:
                    task.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                monitor.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await monitor
            await self._sample()
        self.metrics.finished = time.monotonic()
        return RunReport(
            drained=self._drained.is_set() or self._is_drained(self._counts),
            deadline_hit=deadline_hit,
            aborted=self._aborted,
            counts=dict(self._counts),
            metrics=self.metrics,
            candidate_errors=list(self.errors),
            stalls=list(self.stalls),
            recovered=list(self.recovered),
            given_up=list(self.given_up),
        )

    # --- workers ----------------------------------------------------------------------------

    async def _worker(self, worker_id: str) -> None:
        state = self.metrics.worker_state
        while not self._stop.is_set() and not self._drained.is_set():
            state[worker_id] = "claiming"
            started = time.monotonic()
            try:
                with acting_as(worker_id):
                    job = await self.solution.claim_next_job(worker_id)
            except WorkerCrashed:
                self.metrics.crashes += 1
                continue
            except Exception as error:  # the candidate's bug: report it, keep the run going
                self._candidate_error(
                    CandidateError(worker_id, None, "claim", error, "claim_next_job")
                )
                await asyncio.sleep(self.config.idle_poll)
                continue
            self.metrics.claim_seconds.append(time.monotonic() - started)
            if job is None:
                self.metrics.empty_claims += 1
                state[worker_id] = "idle"
                await asyncio.sleep(self.config.idle_poll)
                continue
            self.metrics.claims += 1
            if not await self._process(worker_id, job):
                state[worker_id] = "stopped"
                return
        state[worker_id] = "done"

    async def _process(self, worker_id: str, job: Job) -> bool:
        """Process one claimed job until it leaves this worker; False stops the worker."""
        released = asyncio.Event()
        heartbeat = (
            asyncio.create_task(
                self._heartbeat(worker_id, job.id, released), name=f"heartbeat-{job.id}"
            )
            if self.config.heartbeat
            else None
        )
        try:
            unchanged = 0
            while not self._stop.is_set():
                current = await self._read_job(job.id)
                if (
                    current is None
                    or current.status != JobStatus.RUNNING
                    or current.worker_id != worker_id
                    or current.step == Step.DONE
                ):
                    return True
                before = {f: getattr(current, f) for f in _PROGRESS_FIELDS}
                step = current.step.value
                self.metrics.worker_state[worker_id] = f"processing {step}"
                started = time.monotonic()
                try:
                    with acting_as(worker_id, job.id):
                        await self.solution.process_job(current)
                except WorkerCrashed:
                    # The process died: the job stays running until its lease expires.
                    self.metrics.crashes += 1
                    self.metrics.worker_state[worker_id] = "restarting"
                    return True
                except Exception as error:
                    self._candidate_error(
                        CandidateError(worker_id, job.id, step, error, "process_job")
                    )
                    return True
                self.metrics.step_seconds[step].append(time.monotonic() - started)
                after = await self._read_job(job.id)
                if after is not None and {f: getattr(after, f) for f in _PROGRESS_FIELDS} == before:
                    unchanged += 1
                    if unchanged >= self.config.stall_limit:
                        self.stalls.append(Stall(worker_id, job.id, step, unchanged))
                        return False
                else:
                    unchanged = 0
            return True
        finally:
            if heartbeat is not None:
                released.set()
                heartbeat.cancel()
                # Not `await heartbeat` under suppress(CancelledError): that would also swallow a
                # cancellation of this worker (the deadline's) that arrives while it waits.
                await asyncio.wait([heartbeat])

    async def _heartbeat(self, worker_id: str, job_id: int, released: asyncio.Event) -> None:
        """Renew this live worker's claim so that the lease only expires for dead workers.

        It stops when ``released`` is set, not only when cancelled: a cancellation can be lost
        (on Python 3.11, ``asyncio.wait_for`` inside psycopg_pool's ``getconn`` returns a
        connection handed over at the moment of the cancel instead of raising), and a heartbeat
        that outlived its worker would renew a crashed worker's claim forever.
        """
        with scoped(job_id=None):  # the harness's own writes are not the job's (crash points)
            while not released.is_set():
                await asyncio.sleep(self.config.lease / 3)
                if released.is_set():
                    return
                try:
                    await Job.filter(
                        id=job_id, worker_id=worker_id, status=JobStatus.RUNNING
                    ).update(claimed_at=utcnow())
                except Exception as error:
                    self._bookkeeping_error(worker_id, job_id, "heartbeat", error)

    async def _read_job(self, job_id: int) -> Job | None:
        """The runner's own read of a job between two ``process_job`` calls. It is bookkeeping,
        not the code under test: when the solution has exhausted the pool or holds the lock, wait
        and read again rather than let the harness's read end the run."""
        while True:
            try:
                return await Job.filter(id=job_id).first()
            except Exception as error:
                self._bookkeeping_error(caller_name(), job_id, "job re-read", error)
                if self._stop.is_set():
                    return None
                await asyncio.sleep(self.config.idle_poll)

    def _bookkeeping_error(self, worker: str, job_id: int, where: str, error: Exception) -> None:
        """One of the runner's own statements failed (and will be retried): a drill counts it."""

    def stop(self) -> None:
        """Stop gracefully: workers take no new job and start no new step, and finish the call
        they are in (the deadline still cancels whatever is left)."""
        self._stop.set()

    def _candidate_error(self, error: CandidateError) -> None:
        self.errors.append(error)
        self.metrics.candidate_errors[type(error.error).__name__] += 1
        if error.job_id is not None:
            self._errors_by_job[error.job_id] += 1
            if self._errors_by_job[error.job_id] >= self.config.errors_per_job_limit:
                self._abort(
                    f"job {error.job_id} raised in process_job "
                    f"{self._errors_by_job[error.job_id]} times: {error.describe()}"
                )
        if len(self.errors) >= 10 * self.config.errors_per_job_limit:
            self._abort(
                f"{len(self.errors)} errors from the solution; first: {self.errors[0].describe()}"
            )

    def _abort(self, reason: str) -> None:
        if self._aborted is None:
            self._aborted = reason
        self._stop.set()

    # --- monitor ----------------------------------------------------------------------------

    async def _monitor(self) -> None:
        while not self._stop.is_set():
            try:
                await self._recover_expired()
                await self._sample()
            except Exception:
                # The monitor is bookkeeping. When the code under test holds locks or every
                # pooled connection (the very mistakes the kata catches), a tick may hit "database
                # is locked", a deadlock or a PoolTimeout: skip it and try again at the next one.
                await asyncio.sleep(self.config.monitor_interval)
                continue
            if self._is_drained(self._counts):
                self._drained.set()
                return
            await asyncio.sleep(self.config.monitor_interval)

    @staticmethod
    def _is_drained(counts: dict[str, int]) -> bool:
        return counts.get("pending", 0) == 0 and counts.get("running", 0) == 0

    async def _recover_expired(self) -> None:
        cutoff = utcnow() - timedelta(seconds=self.config.lease)
        sent = asyncio.get_running_loop().time()
        if self.config.count_recoveries:
            sql, params = RECOVER_COUNTING, recover_counting_params(cutoff)
        else:
            sql, params = RECOVER_EXPIRED, [cutoff]
        rows = await self.world.monitor_database.run(sql, params)
        for row in rows.rows:
            job = (int(row["id"]), row["worker_id"])
            if row.get("status") == "failed":
                self.given_up.append(job)
                continue
            self.recovered.append(job)
            self.services.ledger.record_recovery(*job, at=sent)
            self.metrics.recoveries += 1

    async def _sample(self) -> None:
        self._counts = await count_by_status(self.world.monitor_database)
        loop_now = asyncio.get_running_loop().time()
        ages = [loop_now - tx.started_at for tx in self.database.open_transactions]
        self.metrics.samples.append(
            Sample(
                at=time.monotonic() - self.metrics.started,
                counts=dict(self._counts),
                pool=self.database.pool_stats(),
                round_trips=self.database.round_trips.count,
                open_transactions=len(ages),
                oldest_transaction=max(ages, default=0.0),
            )
        )
