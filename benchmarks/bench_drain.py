"""How fast the reference drains a campaign when the APIs take 20 ms, on each backend.

    .venv/bin/python benchmarks/bench_drain.py [--jobs 5000] [--workers 20] [--db ...]

Twenty workers drain 5,000 jobs with the reference solution; every fake API call takes a constant
20 ms and nothing fails. Printed per backend: jobs per second, the p50/p95/p99 of each step (one
``process_job`` call), database round trips, and the longest wait for a pooled connection.
"""

from __future__ import annotations

import argparse
import asyncio
import time

from rich.console import Console
from rich.table import Table

from harness.devtools.stress import database_configs
from harness.sql.config import DatabaseConfig
from harness.sql.isolation import isolated_database
from harness.sql.models import Campaign
from harness.worker.runner import Runner, RunnerConfig, RunReport
from harness.worker.solutions import REFERENCE_PATH, load_solution
from harness.world import World
from harness.world.campaigns import campaign_emails
from harness.world.faults import FaultPlan, Latency, ServiceFaults
from harness.world.services import Services

API_LATENCY = 0.02
STEPS = ("send_email", "analyze", "take_action")


def slow_apis() -> FaultPlan:
    slow = ServiceFaults(latency=Latency.constant(API_LATENCY))
    return FaultPlan(sendgrid=slow, sentiment=slow, crm=slow)


async def drain(
    config: DatabaseConfig, jobs: int, workers: int
) -> tuple[RunReport, float, int, float]:
    solution = load_solution(REFERENCE_PATH)
    async with isolated_database(config, purpose="bench") as database:
        campaign = await Campaign.create(name="bench drain")
        await solution.create_campaign_jobs(campaign.id, campaign_emails(jobs, invalid=0))
        database.round_trips.reset()
        database.pop_pool_stats()
        started = time.perf_counter()
        report = await Runner(
            solution,
            RunnerConfig(workers=workers, deadline=600),
            world=World(database, Services(slow_apis())),
        ).run()
        seconds = time.perf_counter() - started
        return report, seconds, database.round_trips.count, database.pool_stats().max_wait


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument(
        "--db", action="append", default=[], help="sqlite, postgresql or a URL (default: both)"
    )
    args = parser.parse_args()
    console = Console(width=170)
    table = Table(
        title=f"{args.workers} workers drain {args.jobs:,} jobs, APIs at "
        f"{API_LATENCY * 1000:g} ms (reference solution)"
    )
    table.add_column("backend")
    table.add_column("jobs/s", justify="right")
    for step in STEPS:
        table.add_column(f"{step} p50/p95/p99 ms", justify="right")
    table.add_column("round trips", justify="right")
    table.add_column("round trips/job", justify="right")
    table.add_column("pool max wait", justify="right")
    table.add_column("drained", justify="right")
    for config in database_configs(args.db):
        console.print(f"draining on {config.describe()} ...")
        report, seconds, trips, max_wait = await drain(config, args.jobs, args.workers)
        steps = report.metrics.step_percentiles()
        table.add_row(
            config.dialect,
            f"{args.jobs / seconds:,.1f}",
            *(
                "/".join(f"{steps[s][q] * 1000:.1f}" for q in ("p50", "p95", "p99"))
                if s in steps
                else "-"
                for s in STEPS
            ),
            f"{trips:,}",
            f"{trips / args.jobs:.1f}",
            f"{max_wait * 1000:.1f} ms",
            "yes" if report.drained and report.ok else report.describe(),
        )
    console.print(table)


if __name__ == "__main__":
    asyncio.run(main())
