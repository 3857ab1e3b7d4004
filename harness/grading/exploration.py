"""Hypothesis explores Task D: fault plans and crash points, against the contract's invariants.

Each example is a small world — a few workers draining a few jobs through the real runner, with
timeouts on the APIs and workers crashing at chosen points and at random — judged by the same
invariants as the end-to-end test. The search stops at the first diagnosis:

    diagnosis = await first_counterexample(scenarios(), check)
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import dataclasses
import threading
from collections.abc import Callable, Coroutine
from typing import Any

from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from harness.sql.database import current_database
from harness.sql.models import Job
from harness.sql.orm import utcnow
from harness.sql.queue import claim_params, claim_sql
from harness.tasks import is_not_started
from harness.worker.runner import Runner, RunnerConfig
from harness.worker.solutions import Solution
from harness.world import World
from harness.world.crashes import CrashKind, CrashPlan, CrashPoint
from harness.world.faults import FaultPlan, Latency, ServiceFaults

from .invariants import drain_and_judge
from .kit import Kata

__all__ = [
    "WRITES_OF_A_JOB",
    "Scenario",
    "explore",
    "first_counterexample",
    "harness_claim",
    "scenarios",
]

#: Database writes the reference makes for a full job: the message id, then three advances.
WRITES_OF_A_JOB = 4

_JOBS = 8
_WORKERS = 4
_LEASE = 0.3
_POINTS = (
    CrashPoint.after_effect("sendgrid"),
    CrashPoint.after_effect("crm"),
    *(CrashPoint.before_write(n) for n in range(1, WRITES_OF_A_JOB + 3)),
)


@dataclasses.dataclass(frozen=True)
class Scenario:
    """One explored world: timeouts on every API, crashes at chosen points and at random."""

    seed: int
    timeouts: float
    points: tuple[CrashPoint, ...]
    crash_rate: float

    def fault_plan(self) -> FaultPlan:
        # Timeouts only: 429s would blame a worker for a retry_after given to a worker whose
        # lease ran out under it (the short lease is what makes crash recovery quick).
        faults = ServiceFaults(
            timeout_before=self.timeouts / 2,
            timeout_after=self.timeouts / 2,
            latency=Latency(median=0.001, p99=0.01),
        )
        return FaultPlan(seed=self.seed, sendgrid=faults, sentiment=faults, crm=faults)

    def crash_plan(self) -> CrashPlan:
        return CrashPlan(
            seed=self.seed,
            points=self.points,
            after_effect_rate=self.crash_rate,
            before_write_rate=self.crash_rate,
            max_crashes_per_job=len(self.points) + (1 if self.crash_rate else 0),
        )

    def describe(self) -> str:
        where = [_where(p) for p in self.points if p.kind is CrashKind.AFTER_EFFECT]
        writes = sorted(p.nth for p in self.points if p.kind is CrashKind.BEFORE_WRITE)
        if writes:
            where.append(
                "before each job's database write " + " and ".join(f"#{n}" for n in writes)
            )
        if self.crash_rate:
            where.append(f"at random ({self.crash_rate:.0%} of effects and writes)")
        crashes = f"workers crashing {' and '.join(where)}" if where else "no crashes"
        return f"with timeouts on {self.timeouts:.0%} of API calls and {crashes} (seed {self.seed})"


def _where(point: CrashPoint) -> str:
    if point.service == "sendgrid":
        return "right after each email was delivered"
    return "right after each CRM action"


def scenarios() -> st.SearchStrategy[Scenario]:
    return st.builds(
        Scenario,
        seed=st.integers(0, 10_000),
        timeouts=st.sampled_from([0.0, 0.05, 0.15]),
        points=st.lists(st.sampled_from(_POINTS), max_size=2, unique=True).map(tuple),
        crash_rate=st.sampled_from([0.0, 0.05]),
    )


async def harness_claim(worker_id: str) -> Job | None:
    """The harness's own claim, so that Task D's runs never depend on Task A."""
    database = current_database()
    result = await database.run(claim_sql(database.dialect), claim_params(worker_id, utcnow()))
    return Job.from_row(result.rows[0]) if result.rows else None


async def explore(kata: Kata, solution: Solution, scenario: Scenario, n: int) -> str | None:
    """Run example ``n``: the runner drains a small campaign in ``scenario``'s world. Returns the
    first broken invariant, in the scenario's terms, or None."""
    campaign = await kata.campaign(f"exploration {n}")
    emails = [f"customer.{n}.{i}@example.com" for i in range(_JOBS)]
    jobs = await kata.add_jobs(campaign.id, emails)
    crash_plan = scenario.crash_plan()
    config = RunnerConfig(workers=_WORKERS, lease=_LEASE, deadline=20)
    kata.phase = f"example {n}: {_WORKERS} workers draining {_JOBS} jobs {scenario.describe()}"
    with kata.faults(scenario.fault_plan()) as services:
        runner = Runner(
            solution, config, world=World(kata.database, services, crash_plan=crash_plan)
        )
        problems = await drain_and_judge(runner, jobs=jobs)
    if problems and is_not_started(problems[0]):
        return problems[0]
    return f"{scenario.describe()}: {problems[0]}" if problems else None


async def first_counterexample(
    strategy: st.SearchStrategy[Scenario],
    check: Callable[[Scenario, int], Coroutine[Any, Any, str | None]],
) -> str | None:
    """Let hypothesis pick the scenarios (examples from the active profile) and run each one on
    this event loop; the first diagnosis ends the search.

    Hypothesis drives a synchronous test, so its engine runs in a thread while every example runs
    here, on the loop that owns the database. No shrinking: a diagnosis, not a minimal example,
    is what a candidate needs, and every example costs a run of workers.
    """
    loop = asyncio.get_running_loop()
    found: list[str] = []
    stop = threading.Event()
    running: list[concurrent.futures.Future[str | None]] = []

    @settings(
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(strategy)
    def search(scenario: Scenario) -> None:
        if found or stop.is_set():
            return
        future = asyncio.run_coroutine_threadsafe(check(scenario, len(running) + 1), loop)
        running.append(future)
        diagnosis = future.result()
        if diagnosis:
            found.append(diagnosis)

    try:
        await asyncio.to_thread(search)
    except asyncio.CancelledError:  # the test's time ran out: stop the engine and the example
        stop.set()
        for future in running:
            future.cancel()
        raise
    return found[0] if found else None
