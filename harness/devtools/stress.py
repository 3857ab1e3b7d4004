"""End-to-end stress: a solution drains campaigns under faults and crashes, seed after seed, and
every run is held to the contract's end-to-end invariants.

    python -m harness.devtools.stress --seeds 20 --jobs 5000 --workers 20 \
        [--db URL] [--solution PATH]

Each run gets a fresh isolated database, a campaign with a few undeliverable addresses, the fake
APIs under ``FaultPlan.chaos(seed)`` and a ``CrashPlan`` that kills workers right after external
effects and right before database writes. ``check_end_to_end`` applies the grader's invariants
(``harness.grading.invariants``): it reads the database, the ledger and the crash plan, and
returns every broken invariant as a sentence (an empty list means the run passed).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..grading.invariants import check_invariants
from ..sql.config import DEFAULT_POSTGRES_URL, DatabaseConfig, resolve_database_url
from ..sql.database import Database, current_database
from ..sql.isolation import isolated_database
from ..sql.models import Campaign
from ..worker.runner import Runner, RunnerConfig, RunReport
from ..worker.solutions import REFERENCE_PATH, Solution, load_solution
from ..world import World
from ..world.campaigns import campaign_emails
from ..world.crashes import CrashPlan
from ..world.faults import FaultPlan
from ..world.services import Services

__all__ = [
    "AFTER_EFFECT_CRASH_RATE",
    "BEFORE_WRITE_CRASH_RATE",
    "StressRun",
    "check_end_to_end",
    "database_configs",
    "drain_under_faults",
    "main",
]

AFTER_EFFECT_CRASH_RATE = 0.03
BEFORE_WRITE_CRASH_RATE = 0.03
#: One undeliverable address per this many jobs (at least two per campaign).
JOBS_PER_INVALID_ADDRESS = 1000


# -- the judge -------------------------------------------------------------------------------


async def check_end_to_end(
    database: Database, services: Services, crash_plan: CrashPlan | None = None
) -> list[str]:
    """Every broken end-to-end invariant of a drained run on ``database``, as sentences; ``[]``
    when all hold. The grader's own judge (``harness.grading.invariants``): one set of rules for
    the grader, the stress command and the harness's tests."""
    if current_database() is not database:
        raise ValueError("check_end_to_end judges the active database")
    return await check_invariants(services, crash_plan)


@dataclass
class StressRun:
    """One drained (or not) campaign and what the judge said about it."""

    seed: int
    dialect: str
    jobs: int
    seconds: float
    report: RunReport
    services: Services
    crash_plan: CrashPlan
    problems: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return not self.problems

    @property
    def jobs_per_second(self) -> float:
        return self.jobs / self.seconds if self.seconds > 0 else 0.0

    @property
    def failed(self) -> int:
        return self.report.counts.get("failed", 0)

    @property
    def duplicates(self) -> int:
        ledger = self.services.ledger
        return sum(n - 1 for n in ledger.duplicate_deliveries().values()) + sum(
            n - 1 for n in ledger.duplicate_actions().values()
        )

    def line(self) -> str:
        return (
            f"{self.dialect:<10} seed {self.seed:>3}  {self.jobs} jobs  "
            f"{self.jobs_per_second:8.1f} jobs/s  crashes {len(self.crash_plan.crashes):>4}  "
            f"recoveries {len(self.report.recovered):>4}  failed {self.failed:>3}  "
            f"violations {len(self.services.ledger.violations)}  duplicates {self.duplicates}  "
            + ("PASS" if self.passed else "FAIL")
        )


async def drain_under_faults(
    database: Database,
    solution: Solution,
    *,
    seed: int,
    jobs: int,
    workers: int = 20,
    invalid: int | None = None,
    lease: float = 2.0,
    deadline: float = 120.0,
) -> StressRun:
    """Create a campaign of ``jobs`` on ``database`` (fresh, active), drain it with ``solution``
    under chaos faults and random crashes from ``seed``, and judge the result."""
    if invalid is None:
        invalid = min(jobs, max(2, jobs // JOBS_PER_INVALID_ADDRESS))
    campaign = await Campaign.create(name=f"stress seed {seed}")
    created = await solution.create_campaign_jobs(
        campaign.id, campaign_emails(jobs, invalid=invalid)
    )
    services = Services(FaultPlan.chaos(seed))
    crash_plan = CrashPlan(
        seed=seed,
        after_effect_rate=AFTER_EFFECT_CRASH_RATE,
        before_write_rate=BEFORE_WRITE_CRASH_RATE,
    )
    config = RunnerConfig(workers=workers, lease=lease, deadline=deadline)
    started = time.monotonic()
    world = World(database, services, crash_plan=crash_plan)
    report = await Runner(solution, config, world=world).run()
    run = StressRun(
        seed=seed,
        dialect=database.dialect,
        jobs=jobs,
        seconds=time.monotonic() - started,
        report=report,
        services=services,
        crash_plan=crash_plan,
    )
    if created != jobs:
        run.problems.append(f"create_campaign_jobs created {created} of {jobs} jobs")
    if not report.ok:
        run.problems.append(f"the run did not drain cleanly: {report.describe()}")
    run.problems += await check_end_to_end(database, services, crash_plan)
    return run


# -- the command -------------------------------------------------------------------------------


def database_configs(choices: Sequence[str] = ()) -> list[DatabaseConfig]:
    """The databases named by ``--db`` values: URLs, or ``sqlite`` (a temporary file) and
    ``postgresql`` (``DATABASE_URL`` if it is one, else the local ``test`` database); both when
    none is named."""
    # Each run gets a fresh database (see isolation): sqlite's kata.db is never written.
    return [
        DatabaseConfig(url=resolve_database_url(choice))
        for choice in choices or ("sqlite", "postgresql")
    ]


async def _stress(args: argparse.Namespace) -> int:
    solution = load_solution(args.solution)
    deadline = args.deadline or 60.0 + args.jobs / 20
    passed, total = 0, 0
    for config in database_configs(args.db):
        print(f"# {config.describe()}, {solution.path.name}", flush=True)
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            async with isolated_database(config, purpose="stress") as database:
                run = await drain_under_faults(
                    database,
                    solution,
                    seed=seed,
                    jobs=args.jobs,
                    workers=args.workers,
                    lease=args.lease,
                    deadline=deadline,
                )
            total += 1
            passed += run.passed
            print(run.line(), flush=True)
            kinds = Counter(problem.split(":", 1)[0] for problem in run.problems)
            for problem in run.problems[: args.show]:
                print(f"    {problem}", flush=True)
            if len(run.problems) > args.show:
                print(f"    ... {len(run.problems)} problems in all: {dict(kinds)}", flush=True)
    print(f"{passed}/{total} passed", flush=True)
    return 0 if passed == total else 1


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m harness.devtools.stress",
        description="Drain campaigns under faults and crashes, seed after seed, and check the "
        "end-to-end invariants after every run.",
    )
    parser.add_argument("--seeds", type=int, default=20, help="how many seeds (runs per backend)")
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=5000, help="jobs per campaign")
    parser.add_argument("--workers", type=int, default=20)
    parser.add_argument(
        "--db",
        action="append",
        default=[],
        help="a database URL, or 'sqlite' / 'postgresql' (repeatable; default: both, PostgreSQL "
        f"at DATABASE_URL or {DEFAULT_POSTGRES_URL})",
    )
    parser.add_argument(
        "--solution", type=Path, default=REFERENCE_PATH, help="solution file (default: reference)"
    )
    parser.add_argument("--lease", type=float, default=2.0, help="seconds before a claim expires")
    parser.add_argument("--deadline", type=float, default=0.0, help="seconds per run (0: auto)")
    parser.add_argument("--show", type=int, default=5, help="problems to print per failed run")
    args = parser.parse_args(argv)
    if args.seeds < 1 or args.jobs < 1 or args.workers < 1:
        parser.error("--seeds, --jobs and --workers must be at least 1")
    return asyncio.run(_stress(args))


if __name__ == "__main__":
    sys.exit(main())
