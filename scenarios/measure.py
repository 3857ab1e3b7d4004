"""One measured run: an incident's load against one variant, on a real database.

    result = await run_isolated(incident, incident.variant("flawed"), Load(), base_config)

The run queues the load's campaign, starts the harness's runner (real workers running the
variant's code, the fake APIs with the incident's latency and faults), samples an ``Observer``
for the dashboard while it runs, stops at the load's duration whether or not the queue drained,
and then - with every worker stopped - re-counts the final snapshot against the database and
the ledger (``verify_totals``). Nothing in a result is scripted.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.sql.config import DatabaseConfig
from harness.sql.database import Database, current_database
from harness.sql.isolation import isolated_database
from harness.sql.models import Campaign
from harness.worker.runner import CandidateError, Runner, RunReport
from harness.worker.solutions import Solution
from harness.world import World
from harness.world.campaigns import campaign_emails
from harness.world.metrics import RunMetrics
from harness.world.services import Services

from . import workflow
from .incident import Incident, Load, Variant
from .record import ErrorEvent, RunRecord, build_record, new_id
from .snapshot import Observer, Snapshot
from .totals import Totals, verify_totals

__all__ = ["SAMPLE_INTERVAL", "RunResult", "run_isolated", "run_load"]

#: Seconds between dashboard snapshots.
SAMPLE_INTERVAL = 0.25
#: Connections of the drill's own pool (the monitor's statements, the final count).
_OWN_POOL_SIZE = 2
#: Seconds the monitor waits for SQLite's write lock before skipping a tick's recovery: the
#: dashboard's counts must keep coming while the incident's code hogs the lock.
_OWN_BUSY_TIMEOUT = 0.25

OnSnapshot = Callable[[Snapshot], None]


@dataclass
class RunResult:
    """A finished run: the last snapshot (what the dashboard showed), re-counted totals, the raw
    records the diagnosis reads, and the run's ``record`` (what is kept and quoted)."""

    incident: Incident
    variant: Variant
    load: Load
    dialect: str
    snapshot: Snapshot
    totals: Totals
    report: RunReport
    services: Services
    created: int
    record: RunRecord = field(init=False)

    @property
    def jobs_per_minute(self) -> float:
        return self.snapshot.throughput_avg

    def figures(self) -> dict[str, Any]:
        """The headline numbers, for before/after tables, signatures and ``--json``."""
        return self.record.figures()

    def as_dict(self) -> dict[str, Any]:
        return self.record.as_dict()


class _DrillRunner(Runner):
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
    """

    def __init__(
        self, *args: Any, stop_after: float, harness_errors: Counter[str], **kwargs: Any
    ) -> None:
        super().__init__(*args, **kwargs)
        self.stop_after = stop_after
        self.harness_errors = harness_errors
        self.error_log: list[ErrorEvent] = []

    async def run(self) -> RunReport:
        stop = asyncio.get_running_loop().call_later(self.stop_after, self.stop)
        try:
            return await super().run()
        finally:
            stop.cancel()

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


def _timing_failures(solution: Solution, metrics: RunMetrics) -> Solution:
    """``solution`` with its failed calls timed too: the runner times a claim or a step only when
    it returns, but a claim that waited a second for a connection and then raised PoolTimeout
    is the slowest claim of all, and the latency table - and its p99 - must count it."""

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
        except Exception:
            metrics.step_seconds[step].append(time.monotonic() - started)
            raise

    return dataclasses.replace(solution, claim_next_job=claim_next_job, process_job=process_job)


async def run_load(
    incident: Incident,
    variant: Variant,
    load: Load,
    *,
    database: Database,
    on_snapshot: OnSnapshot | None = None,
    interval: float = SAMPLE_INTERVAL,
    grace: float | None = None,
    record_id: str | None = None,
) -> RunResult:
    """Run ``load`` on ``database`` (active, fresh, with the kata's schema and the incident's
    pool options) with ``variant``'s code; call ``on_snapshot`` with each snapshot. At the
    load's duration the workers are told to stop; ``grace`` seconds later (the deployment's
    ``stop_grace`` unless given) the rest is cancelled. The result's ``record`` has every
    snapshot, under ``record_id`` (a new id unless given)."""
    if current_database() is not database:
        raise RuntimeError("run_load needs the database it is given to be the active one")
    campaign = await Campaign.create(name=f"incident {incident.number}: {incident.title}")
    emails = campaign_emails(load.jobs, invalid=min(load.jobs, max(1, load.jobs // 1000)))
    created = await workflow.create_campaign_jobs(campaign.id, emails)
    database.round_trips.reset()  # queueing the campaign is not part of the run

    deployment = incident.deployment_for(variant.key)
    config = deployment.runner_config(load, police_errors=not variant.ours, grace=grace)
    services = Services(deployment.apis(load.seed))
    metrics = RunMetrics()
    harness_errors: Counter[str] = Counter()
    observer = Observer(
        scenario=incident.number,
        title=incident.title,
        variant=variant.label,
        database=database,
        services=services,
        metrics=metrics,
        config=config,
        jobs=created,
        duration=load.duration,
        harness_errors=harness_errors,
    )
    timeline: list[Snapshot] = []

    def keep(snapshot: Snapshot) -> None:
        timeline.append(snapshot)
        if on_snapshot is not None:
            on_snapshot(snapshot)

    # The drill's own connections: the monitor's statements and the final count. A worker
    # cancelled at the deadline can leave a pooled connection still busy with its statement,
    # and the count must not queue behind it.
    own = Database(
        database.config.with_options(
            pool_size=_OWN_POOL_SIZE, pool_timeout=30, busy_timeout=_OWN_BUSY_TIMEOUT
        )
    )
    await own.open()
    try:
        runner = _DrillRunner(
            _timing_failures(variant.solution, metrics),
            config,
            stop_after=load.duration,
            harness_errors=harness_errors,
            world=World(database, services, metrics=metrics, bookkeeping=own),
        )
        # The ledger's clock is the loop's; the runner's is time.monotonic() from its start.
        started = asyncio.get_running_loop().time() - (time.monotonic() - metrics.started)
        sampler = asyncio.create_task(_sample(observer, keep, interval), name="sampler")
        try:
            report = await runner.run()
        finally:
            sampler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sampler
        final = observer.take(final=True)
        totals = await verify_totals(final, own, services, created=created)
    finally:
        await own.close()
    keep(final)
    result = RunResult(
        incident=incident,
        variant=variant,
        load=load,
        dialect=database.dialect,
        snapshot=final,
        totals=totals,
        report=report,
        services=services,
        created=created,
    )
    result.record = build_record(
        result,
        id=record_id or new_id(incident.number, variant.key),
        timeline=timeline,
        errors=runner.error_log,
        started=started,
        grace=grace,
    )
    return result


async def run_isolated(
    incident: Incident,
    variant: Variant,
    load: Load,
    base: DatabaseConfig,
    *,
    on_snapshot: OnSnapshot | None = None,
    interval: float = SAMPLE_INTERVAL,
    grace: float | None = None,
    record_id: str | None = None,
) -> RunResult:
    """``run_load`` on a throwaway database (a temporary SQLite file, or a fresh PostgreSQL
    schema that is dropped afterwards) with the incident's pool settings."""
    options = incident.deployment_for(variant.key).database_options(load)
    async with isolated_database(base, f"incident{incident.number}", **options) as database:
        return await run_load(
            incident,
            variant,
            load,
            database=database,
            on_snapshot=on_snapshot,
            interval=interval,
            grace=grace,
            record_id=record_id,
        )


async def _sample(observer: Observer, on_snapshot: OnSnapshot | None, interval: float) -> None:
    while True:
        snapshot = observer.take()
        if on_snapshot is not None:
            on_snapshot(snapshot)
        await asyncio.sleep(interval)
