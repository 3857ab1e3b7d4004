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
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness.sql.config import DatabaseConfig
from harness.sql.database import Database, current_database
from harness.sql.isolation import isolated_database
from harness.sql.models import Campaign
from harness.worker.runner import RunReport
from harness.world import World
from harness.world.metrics import RunMetrics
from harness.world.services import Services

from . import workflow, world
from .catalog import diagnosis_of
from .drill_runner import DrillRunner, watched
from .incident import Incident, Load, Variant
from .record import RunRecord, new_id
from .recording import build_record
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
    created = await workflow.create_campaign_jobs(campaign.id, world.campaign(incident, load))
    database.round_trips.reset()  # queueing the campaign is not part of the run

    deployment = incident.deployment_for(variant.key)
    config = deployment.runner_config(load, police_errors=not variant.ours, grace=grace)
    services = world.services(incident, deployment.apis(load.seed))
    metrics = RunMetrics()
    harness_errors: Counter[str] = Counter()
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
        runner = DrillRunner(
            watched(variant.solution, metrics, lambda: runner),
            config,
            stop_after=load.duration,
            harness_errors=harness_errors,
            deployment=deployment,
            reaper=variant.solution.recover_stalled_jobs
            if incident.solution_reaps and not variant.ours
            else None,
            world=World(database, services, metrics=metrics, bookkeeping=own),
        )
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
            crashes=runner.crash_log,
            given_up=runner.given_up,
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
        crashed = await _rows_of(own, {crash.job_id for crash in runner.crash_log})
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
        crashes=runner.crash_log,
        given_up_at=runner.given_up_at,
        crashed=crashed,
        started=started,
        grace=grace,
        telling=diagnosis_of(incident.number).telling,
    )
    if runner.reaper_missing is not None:
        result.record.notes["reaper"] = runner.reaper_missing
    return result


async def _rows_of(database: Database, jobs: set[int]) -> dict[int, dict[str, Any]]:
    """How the run left the jobs that killed a worker: status, attempts, last error."""
    if not jobs:
        return {}
    marks = ", ".join("?" for _ in jobs)
    result = await database.run(
        f"SELECT id, status, attempts, last_error FROM jobs WHERE id IN ({marks})", sorted(jobs)
    )
    return {int(row["id"]): {k: v for k, v in row.items() if k != "id"} for row in result.rows}


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
