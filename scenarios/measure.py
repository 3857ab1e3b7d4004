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
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from harness.config import DatabaseConfig
from harness.database import Database, current_database
from harness.isolation import isolated_database
from harness.metrics import RunMetrics
from harness.models import Campaign
from harness.runner import Runner, RunReport
from harness.services import Services
from harness.stress import campaign_emails

from . import workflow
from .incident import Incident, Load, Variant
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
    """A finished run: the last snapshot (what the dashboard showed), re-counted totals, and
    the raw records the diagnosis quotes."""

    incident: Incident
    variant: Variant
    load: Load
    dialect: str
    snapshot: Snapshot
    totals: Totals
    report: RunReport
    services: Services
    created: int

    @property
    def jobs_per_minute(self) -> float:
        return self.snapshot.throughput_avg

    def figures(self) -> dict[str, Any]:
        """The headline numbers, for before/after tables, signatures and ``--json``."""
        s = self.snapshot
        latency = s.latency
        return {
            "jobs_per_min": round(s.throughput_avg, 1),
            "capacity_jobs_per_min": round(s.capacity, 1) if s.capacity else None,
            "api_seconds_per_job": round(s.api_seconds_per_job, 4)
            if s.api_seconds_per_job
            else None,
            **s.counts,
            "delivered": s.delivered,
            "duplicate_copies": s.duplicate_copies,
            "duplicated_recipients": s.duplicated_recipients,
            "pool_timeouts": s.pool.timeouts,
            "pool_max_wait_s": round(s.pool.max_wait, 3),
            "pool_saturated_share": round(s.pool_saturated_share, 3),
            "p99_claim_s": round(latency["claim"]["p99"], 4),
            "p99_step_s": round(latency["all steps"]["p99"], 4),
            **{
                f"p99_{step}_s": round(latency[step]["p99"], 4)
                for step in ("send_email", "analyze", "take_action")
                if step in latency
            },
            "calls_in_transaction": s.calls_in_transaction,
            "recoveries": s.recoveries,
            "workers_waiting_on_lock_avg": round(s.states_avg["waiting on a lock"], 2),
            "oldest_transaction_max_s": round(s.oldest_transaction_max, 3),
            "worker_errors": dict(s.worker_errors),
        }

    def as_dict(self) -> dict[str, Any]:
        dashboard = {
            **self.snapshot.counts,
            "total": self.snapshot.jobs,
            "delivered": self.snapshot.delivered,
            "duplicate_copies": self.snapshot.duplicate_copies,
            "duplicated_recipients": self.snapshot.duplicated_recipients,
            "api_calls": sum(self.snapshot.api_calls.values()),
        }
        return {
            "variant": self.variant.key,
            "label": self.variant.label,
            "solution": str(self.variant.solution.path),
            "dialect": self.dialect,
            "database": self.snapshot.database,
            "elapsed_s": round(self.snapshot.elapsed, 3),
            "drained": self.report.drained,
            "aborted": self.report.aborted,
            "load": {
                "jobs": self.load.jobs,
                "workers": self.load.workers,
                "duration_s": self.load.duration,
                "seed": self.load.seed,
            },
            "figures": self.figures(),
            "dashboard": dashboard,
            "database_totals": self.totals.as_dict(),
            "verified": True,  # a mismatch raises TotalsMismatch instead of returning
        }


class _DrillRunner(Runner):
    """The harness's runner, with the changes a drill needs.

    * It stops the way a deployed worker stops on SIGTERM: at ``stop_after`` seconds the workers
      take no new job and start no new step, and finish the call they are in (the config's
      deadline, a few seconds later, cancels what is left). Cancelling statements mid-flight
      would leave queries running on the server after the final count.
    """

    def __init__(self, *args: Any, stop_after: float, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.stop_after = stop_after

    async def run(self) -> RunReport:
        stop = asyncio.get_running_loop().call_later(self.stop_after, self.stop)
        try:
            return await super().run()
        finally:
            stop.cancel()


class _MonitorPool:
    """The database as the runner's monitor sees it: its statements (recovering expired claims,
    counting jobs) go through a small pool of their own, so that an exhausted pool cannot
    silence the monitor, nor the monitor make the exhaustion worse. Every figure it samples -
    pool, open transactions, round trips - is still the workers' database's."""

    def __init__(self, workers: Database, monitor: Database) -> None:
        self._workers = workers
        self._monitor = monitor

    async def run(self, sql: str, params: Sequence[Any] = ()) -> Any:
        return await self._monitor.run(sql, params)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._workers, name)


async def run_load(
    incident: Incident,
    variant: Variant,
    load: Load,
    *,
    database: Database,
    on_snapshot: OnSnapshot | None = None,
    interval: float = SAMPLE_INTERVAL,
    grace: float | None = None,
) -> RunResult:
    """Run ``load`` on ``database`` (active, fresh, with the kata's schema and the incident's
    pool options) with ``variant``'s code; call ``on_snapshot`` with each snapshot. At the
    load's duration the workers are told to stop; ``grace`` seconds later (the deployment's
    ``stop_grace`` unless given) the rest is cancelled."""
    if current_database() is not database:
        raise RuntimeError("run_load needs the database it is given to be the active one")
    campaign = await Campaign.create(name=f"incident {incident.number}: {incident.title}")
    emails = campaign_emails(load.jobs, invalid=min(load.jobs, max(1, load.jobs // 1000)))
    created = await workflow.create_campaign_jobs(campaign.id, emails)
    database.round_trips.reset()  # queueing the campaign is not part of the run

    deployment = incident.deployment
    config = deployment.runner_config(load, police_errors=not variant.ours, grace=grace)
    services = Services(deployment.apis(load.seed))
    metrics = RunMetrics()
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
    )
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
            variant.solution,
            config,
            stop_after=load.duration,
            database=_MonitorPool(database, own),  # type: ignore[arg-type]
            services=services,
            metrics=metrics,
        )
        sampler = asyncio.create_task(_sample(observer, on_snapshot, interval), name="sampler")
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
    if on_snapshot is not None:
        on_snapshot(final)
    return RunResult(
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


async def run_isolated(
    incident: Incident,
    variant: Variant,
    load: Load,
    base: DatabaseConfig,
    *,
    on_snapshot: OnSnapshot | None = None,
    interval: float = SAMPLE_INTERVAL,
    grace: float | None = None,
) -> RunResult:
    """``run_load`` on a throwaway database (a temporary SQLite file, or a fresh PostgreSQL
    schema that is dropped afterwards) with the incident's pool settings."""
    options = incident.deployment.database_options(load)
    async with isolated_database(base, f"incident{incident.number}", **options) as database:
        return await run_load(
            incident,
            variant,
            load,
            database=database,
            on_snapshot=on_snapshot,
            interval=interval,
            grace=grace,
        )


async def _sample(observer: Observer, on_snapshot: OnSnapshot | None, interval: float) -> None:
    while True:
        snapshot = observer.take()
        if on_snapshot is not None:
            on_snapshot(snapshot)
        await asyncio.sleep(interval)
