"""The harness's runner, as a drill runs it: stopped like a deployment, its errors and crashes
kept with their time and place, its dead workers restarted after a back-off, and - when the
drill's flaw is the reaper's and the code is a candidate's - the candidate's reaper in the
monitor (``recover_stalled_jobs``, Task F) instead of the harness's.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from harness.exceptions import WorkerCrashed
from harness.ownership import is_program_code
from harness.scope import acting_as, caller_name
from harness.sql.models import Job
from harness.sql.orm import utcnow
from harness.worker.runner import CandidateError, Runner, RunReport
from harness.worker.solutions import Solution
from harness.world.metrics import RunMetrics

from . import world
from .incident import Deployment
from .record import CrashEvent, ErrorEvent

__all__ = ["REAPER", "DrillRunner", "watched"]

#: Who the candidate's reaper acts as: its statements and errors are its own, no worker's.
REAPER = "reaper"
#: The jobs a reaper is due to take back: running, their claim older than the lease.
_DUE = (
    "SELECT id, worker_id FROM jobs WHERE status = 'running' "
    "AND COALESCE(claimed_at, updated_at) < ?"
)


class DrillRunner(Runner):
    """The harness's runner, with the changes a drill needs.

    * It stops the way a deployed worker stops on SIGTERM: at ``stop_after`` seconds the workers
      take no new job and start no new step, and finish the call they are in (the config's
      deadline, a few seconds later, cancels what is left). Cancelling statements mid-flight
      would leave queries running on the server after the final count.
    * It keeps every error with its time and place: the solution's (``claim_next_job``,
      ``process_job``) and those of the runner's own statements on the workers' pool (the
      heartbeat, the job's re-read between steps), which the runner retries silently. A board
      that shows PoolTimeouts must be able to say whose they were: these two add up to the
      pool's count.
    * It keeps every crash of a worker's process with its job, and restarts the worker as the
      deployment does: after its back-off (``Deployment.restart_after``), not at once.
    * Given a ``reaper`` (a candidate's ``recover_stalled_jobs``), the monitor runs it instead
      of the harness's recovery, and reads what it did from the rows it was due to take: back
      in the queue (recovered), or failed (given up). A reaper not written yet
      (``NotImplementedError``) leaves the harness's recovery in place, noted in
      ``reaper_missing``.
    """

    def __init__(
        self,
        *args: Any,
        stop_after: float,
        harness_errors: Counter[str],
        deployment: Deployment,
        reaper: Callable[[float], Awaitable[int]] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.reaper = reaper
        #: The reaper's ``NotImplementedError``, when it was not written (Task F not started).
        self.reaper_missing: str | None = None
        self.stop_after = stop_after
        self.harness_errors = harness_errors
        self.deployment = deployment
        self.error_log: list[ErrorEvent] = []
        self.crash_log: list[CrashEvent] = []
        #: When the counting recovery failed each job it gave up on (seconds since the start).
        self.given_up_at: dict[int, float] = {}
        self._crashes_of: Counter[str] = Counter()

    async def run(self) -> RunReport:
        stop = asyncio.get_running_loop().call_later(self.stop_after, self.stop)
        try:
            return await super().run()
        finally:
            stop.cancel()

    async def _process(self, worker_id: str, job: Job) -> bool:
        carry_on = await super()._process(worker_id, job)
        if self.metrics.worker_state.get(worker_id) == "restarting":  # its process died
            self._crashes_of[worker_id] += 1
            await self._restart(
                worker_id, self.deployment.restart_after(self._crashes_of[worker_id])
            )
        return carry_on

    async def _restart(self, worker_id: str, delay: float) -> None:
        """The dead worker's process comes back after ``delay`` seconds (or at the stop)."""
        if delay <= 0:
            return
        self.metrics.worker_state[worker_id] = f"restarting (back-off {delay:g} s)"
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), delay)

    async def _recover_expired(self) -> None:
        before = len(self.given_up)
        if self.reaper is None:
            await super()._recover_expired()
        else:
            await self._reap(self.reaper)
        at = round(time.monotonic() - self.metrics.started, 3)
        for job_id, _ in self.given_up[before:]:
            self.given_up_at[job_id] = at

    async def _reap(self, reaper: Callable[[float], Awaitable[int]]) -> None:
        """One tick of the candidate's reaper, and what it did to the jobs it was due to take."""
        monitor = self.world.monitor_database
        cutoff = utcnow() - timedelta(seconds=self.config.lease)
        due = {int(row["id"]): row["worker_id"] for row in (await monitor.run(_DUE, [cutoff])).rows}
        sent = asyncio.get_running_loop().time()
        try:
            with acting_as(REAPER):
                await reaper(self.config.lease)
        except NotImplementedError as error:
            self.reaper, self.reaper_missing = None, str(error)
            await super()._recover_expired()
            return
        except Exception as error:  # the candidate's bug: reported, the monitor goes on
            self._candidate_error(
                CandidateError(REAPER, None, "reap", error, "recover_stalled_jobs")
            )
            return
        if not due:
            return
        marks = ", ".join("?" for _ in due)
        after = await monitor.run(
            f"SELECT id, status, worker_id, claimed_at FROM jobs WHERE id IN ({marks})",
            list(due),
        )
        for row in after.rows:
            job = (int(row["id"]), due[int(row["id"])])
            if row["status"] == "failed":
                self.given_up.append(job)
            elif row["status"] == "pending" or row["worker_id"] != job[1]:
                self.recovered.append(job)
                self.services.ledger.record_recovery(*job, at=sent)
                self.metrics.recoveries += 1

    def crashed(self, worker: str, job: Any, error: WorkerCrashed) -> None:
        self.crash_log.append(
            CrashEvent(
                at=round(time.monotonic() - self.metrics.started, 3),
                worker=worker,
                job_id=job.id,
                step=job.step.value,
                message=error.point,
                site=_died_at(error),
            )
        )

    def _candidate_error(self, error: CandidateError) -> None:
        self._log(error.worker_id, error.job_id, error.where, error.error)
        super()._candidate_error(error)

    def _log(self, worker: str, job_id: int | None, where: str, error: BaseException) -> None:
        self.error_log.append(
            ErrorEvent(
                at=round(time.monotonic() - self.metrics.started, 3),
                worker=worker,
                job_id=job_id,
                where=where,
                type=type(error).__name__,
                message=str(error).splitlines()[0] if str(error) else "",
            )
        )

    def _bookkeeping_error(self, worker: str, job_id: int, where: str, error: Exception) -> None:
        self.harness_errors[type(error).__name__] += 1
        self._log(worker, job_id, where, error)


def _died_at(error: WorkerCrashed) -> str | None:
    """The line of the worker's code it died at: the innermost frame of program code (the
    solution's, or production's) that is not the drill's world killing it."""
    frames = [
        frame
        for frame in traceback.extract_tb(error.__traceback__)
        if is_program_code(frame.filename) and frame.filename != world.__file__
    ]
    if not frames:
        return None
    frame = frames[-1]
    return f"{Path(frame.filename).name}:{frame.lineno} in {frame.name}()"


def watched(solution: Solution, metrics: RunMetrics, runner: Callable[[], DrillRunner]) -> Solution:
    """``solution`` with its failed calls timed too, and its crashes noted: the runner times a
    claim or a step only when it returns, but a claim that waited a second for a connection and
    then raised PoolTimeout is the slowest claim of all, and the latency table - and its p99 -
    must count it; and it counts a worker's crashes, but not whose job killed it."""

    async def claim_next_job(worker_id: str) -> Any:
        started = time.monotonic()
        try:
            return await solution.claim_next_job(worker_id)
        except Exception:
            metrics.claim_seconds.append(time.monotonic() - started)
            raise

    async def process_job(job: Any) -> None:
        step, started = job.step.value, time.monotonic()
        try:
            await solution.process_job(job)
        except WorkerCrashed as crash:
            runner().crashed(caller_name(), job, crash)
            raise
        except Exception:
            metrics.step_seconds[step].append(time.monotonic() - started)
            raise

    return dataclasses.replace(solution, claim_next_job=claim_next_job, process_job=process_job)
