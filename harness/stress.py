"""End-to-end stress: a solution drains campaigns under faults and crashes, seed after seed, and
every run is held to the contract's end-to-end invariants.

    python -m harness.stress --seeds 20 --jobs 5000 --workers 20 [--db URL] [--solution PATH]

Each run gets a fresh isolated database, a campaign with a few undeliverable addresses, the fake
APIs under ``FaultPlan.chaos(seed)`` and a ``CrashPlan`` that kills workers right after external
effects and right before database writes. ``check_end_to_end`` is the one judge, shared with the
harness's own test suite: it reads the database, the ledger and the crash plan, and returns every
broken invariant as a sentence (an empty list means the run passed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .config import DatabaseConfig
from .crashes import CrashPlan
from .database import Database
from .faults import FaultPlan
from .isolation import isolated_database
from .ledger import Call, ViolationKind
from .models import Campaign, Job, JobStatus, JobTransition, Step
from .runner import Runner, RunnerConfig, RunReport
from .services import SENTIMENTS, Services, classify_sentiment, reply_for
from .solutions import REFERENCE_PATH, Solution, load_solution

__all__ = [
    "AFTER_EFFECT_CRASH_RATE",
    "BEFORE_WRITE_CRASH_RATE",
    "DEFAULT_POSTGRES_URL",
    "StressRun",
    "campaign_emails",
    "check_end_to_end",
    "database_configs",
    "drain_under_faults",
    "main",
]

DEFAULT_POSTGRES_URL = "postgresql://postgres@127.0.0.1:5432/test"
AFTER_EFFECT_CRASH_RATE = 0.03
BEFORE_WRITE_CRASH_RATE = 0.03
#: One undeliverable address per this many jobs (at least two per campaign).
JOBS_PER_INVALID_ADDRESS = 1000

_FINAL = (JobStatus.COMPLETED, JobStatus.FAILED)
# The API outcome of a permanent error (400): the one call of its kind a job may make.
_PERMANENT_OUTCOME = "invalid"


# -- the judge -------------------------------------------------------------------------------


async def check_end_to_end(
    database: Database, services: Services, crash_plan: CrashPlan | None = None
) -> list[str]:
    """Every broken end-to-end invariant of a drained run, as sentences; ``[]`` when all hold.

    Reads the jobs and their transitions from ``database``, the calls, effects and violations
    from ``services.ledger``, and the crashes from ``crash_plan``. Assumes one campaign: effects
    are matched to jobs by address.
    """
    jobs = [
        Job.from_row(row) for row in (await database.run("SELECT * FROM jobs ORDER BY id")).rows
    ]
    transitions = [
        JobTransition.from_row(row)
        for row in (await database.run("SELECT * FROM job_transitions ORDER BY id")).rows
    ]
    return [
        *_unfinished_jobs(jobs),
        *_effects_of_jobs(jobs, services),
        *_retried_permanent_errors(jobs, services, crash_plan),
        *_violations(services, crash_plan),
        *_concurrent_claims(jobs, transitions),
        *_concurrent_calls(services.ledger.calls),
    ]


def _unfinished_jobs(jobs: list[Job]) -> list[str]:
    problems = []
    for job in jobs:
        if job.status not in _FINAL:
            problems.append(
                f"job {job.id} ({job.email}) ended {job.status.value} at step {job.step.value}: "
                "every job must end completed or failed"
            )
        elif job.status is JobStatus.FAILED and not job.last_error:
            problems.append(f"job {job.id} ({job.email}) failed without a last_error")
        elif job.status is JobStatus.COMPLETED and job.step is not Step.DONE:
            problems.append(f"job {job.id} ({job.email}) completed at step {job.step.value}")
    return problems


def _effects_of_jobs(jobs: list[Job], services: Services) -> list[str]:
    """Each completed job: one email, one sentiment, one CRM action, and they are the ones the
    job recorded. A failed job: at most one of each."""
    ledger = services.ledger
    deliveries = defaultdict(list)
    for delivery in ledger.deliveries:
        deliveries[delivery.to].append(delivery)
    actions = defaultdict(list)
    for action in ledger.actions:
        actions[action.email].append(action)
    problems = []
    emails = {job.email for job in jobs}
    for email in sorted(set(deliveries) - emails):
        problems.append(f"{len(deliveries[email])} email(s) went to {email}, who has no job")
    for email in sorted(set(actions) - emails):
        problems.append(f"{len(actions[email])} CRM action(s) for {email}, who has no job")
    for job in jobs:
        sent, acted = deliveries.get(job.email, []), actions.get(job.email, [])
        if len(sent) > 1:
            problems.append(
                f"job {job.id} ({job.email}) delivered {len(sent)} emails: "
                + ", ".join(f"{d.message_id} by {d.caller}" for d in sent)
            )
        if len(acted) > 1:
            problems.append(
                f"job {job.id} ({job.email}) applied {len(acted)} CRM actions: "
                + ", ".join(f"{a.action_id} by {a.caller}" for a in acted)
            )
        if job.status is not JobStatus.COMPLETED:
            continue
        if not sent:
            problems.append(f"job {job.id} ({job.email}) completed without delivering its email")
        elif job.message_id not in {d.message_id for d in sent}:
            problems.append(
                f"job {job.id} ({job.email}) recorded message_id {job.message_id!r}, "
                f"but the email delivered was {sent[0].message_id!r}"
            )
        expected = classify_sentiment(reply_for(services.plan.seed, job.email))
        if job.sentiment not in SENTIMENTS:
            problems.append(
                f"job {job.id} ({job.email}) completed with sentiment {job.sentiment!r}"
            )
        elif job.sentiment != expected:
            problems.append(
                f"job {job.id} ({job.email}) recorded sentiment {job.sentiment!r}, but the "
                f"customer's reply is {expected!r}"
            )
        if not acted:
            problems.append(f"job {job.id} ({job.email}) completed without a CRM action")
        elif (applied := next((a for a in acted if a.action_id == job.action_id), None)) is None:
            problems.append(
                f"job {job.id} ({job.email}) recorded action_id {job.action_id!r}, "
                f"but the CRM applied {acted[0].action_id!r}"
            )
        elif applied.sentiment != job.sentiment:
            problems.append(
                f"job {job.id} ({job.email}) was routed as {applied.sentiment!r} "
                f"but recorded sentiment {job.sentiment!r}"
            )
    return problems


def _retried_permanent_errors(
    jobs: list[Job], services: Services, crash_plan: CrashPlan | None
) -> list[str]:
    """A job that met a permanent error failed, after exactly one call of that kind, unless the
    job crashed after that call (its worker then never got to record the error)."""
    calls = defaultdict(list)
    for call in services.ledger.calls:
        calls[(call.service, call.operation, call.subject)].append(call)
    by_id = {job.id: job for job in jobs}
    problems = []
    for (service, operation, subject), made in calls.items():
        permanent = next((c for c in made if c.outcome == _PERMANENT_OUTCOME), None)
        if permanent is None:
            continue
        job = by_id.get(permanent.job_id) if permanent.job_id is not None else None
        who = f"job {job.id} ({job.email})" if job else f"{operation} for {subject}"
        if job is not None and job.status is not JobStatus.FAILED:
            problems.append(
                f"{who} met a permanent {permanent.error} from {service} "
                f"but ended {job.status.value}"
            )
        if len(made) > 1 and not _crashed_after(crash_plan, permanent):
            problems.append(
                f"{who}: {operation} was called {len(made)} times; after the permanent "
                f"{permanent.error} it must not be called again"
            )
    return problems


def _crashed_after(crash_plan: CrashPlan | None, call: Call) -> bool:
    if crash_plan is None or call.job_id is None:
        return False
    return any(crash.at >= call.at for crash in crash_plan.crashes_of(call.job_id))


def _violations(services: Services, crash_plan: CrashPlan | None) -> list[str]:
    problems = []
    for violation in services.ledger.violations:
        detail = f"violation ({violation.kind.value}): {violation.detail}"
        if (
            violation.kind is ViolationKind.RETRY_AFTER_PERMANENT_ERROR
            and crash_plan is not None
            and violation.job_id is not None
            and (crashes := crash_plan.crashes_of(violation.job_id))
        ):
            # Reported, never excused: but say what caused it, since no solution can avoid a
            # retry when the worker dies between the 400 and the write that records it.
            detail += f" [the job crashed in between: {crashes[0].point}]"
        problems.append(detail)
    return problems


def _concurrent_claims(jobs: list[Job], transitions: list[JobTransition]) -> list[str]:
    """From the transition history: it is continuous, and while a worker holds a job (from its
    pending->running claim until the job leaves running) no other worker's id shows up on it.
    A second claim of a running job either needs the job to leave running first (a transition)
    or overwrites ``worker_id`` in place (which the next transition then carries)."""
    history = defaultdict(list)
    for transition in transitions:
        history[transition.job_id].append(transition)
    problems = []
    for job in jobs:
        state = (JobStatus.PENDING, Step.SEND_EMAIL)
        holder: str | None = None
        for t in history.get(job.id, []):
            if (t.old_status, t.old_step) != state:
                problems.append(
                    f"job {job.id}: transition #{t.id} starts from {t.old_status.value}/"
                    f"{t.old_step.value}, but the job was {state[0].value}/{state[1].value}"
                )
                break
            if t.old_status is JobStatus.RUNNING and t.worker_id not in (None, holder):
                problems.append(
                    f"job {job.id} was claimed by {holder} and then by {t.worker_id} while it "
                    f"was still running (transition #{t.id}: {t.old_step.value} -> "
                    f"{t.new_step.value})"
                )
                break
            if t.old_status is not JobStatus.RUNNING and t.new_status is JobStatus.RUNNING:
                holder = t.worker_id
            elif t.new_status is not JobStatus.RUNNING:
                holder = None
            state = (t.new_status, t.new_step)
        else:
            if history.get(job.id) and state != (job.status, job.step):
                problems.append(
                    f"job {job.id} is {job.status.value}/{job.step.value}, but its last "
                    f"transition left it {state[0].value}/{state[1].value}"
                )
    return problems


def _concurrent_calls(calls: list[Call]) -> list[str]:
    """No two workers had API calls for the same job in flight at the same time."""
    by_job = defaultdict(list)
    for call in calls:
        if call.job_id is not None:
            by_job[call.job_id].append(call)
    problems = []
    for job_id, made in sorted(by_job.items()):
        ends: dict[str, float] = {}
        for call in sorted(made, key=lambda c: c.at):
            other = next((w for w, end in ends.items() if w != call.caller and end > call.at), None)
            if other is not None:
                problems.append(
                    f"job {job_id}: {call.caller} called {call.operation} while a call of "
                    f"{other} for the same job was still in flight (two workers on one job)"
                )
                break
            ends[call.caller] = max(ends.get(call.caller, call.at), call.at + call.duration)
    return problems


# -- one run -----------------------------------------------------------------------------------


def campaign_emails(count: int, *, invalid: int = 2) -> list[str]:
    """``count`` customer addresses, ``invalid`` of them undeliverable (``@bounce.invalid``),
    spread through the list."""
    if not 0 <= invalid <= count:
        raise ValueError(f"invalid must be between 0 and count ({count}), got {invalid}")
    bad = {(k + 1) * count // (invalid + 1) for k in range(invalid)}
    return [
        f"x{i}@bounce.invalid" if i in bad else f"customer.{i}@example.com" for i in range(count)
    ]


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
    report = await Runner(
        solution, config, database=database, services=services, crash_plan=crash_plan
    ).run()
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
    postgres = os.environ.get("DATABASE_URL", "")
    if not postgres.startswith(("postgresql:", "postgres:")):
        postgres = DEFAULT_POSTGRES_URL
    configs = []
    for choice in choices or ("sqlite", "postgresql"):
        if choice == "sqlite":
            configs.append(DatabaseConfig(url="sqlite:///kata.db"))  # a temp file, see isolation
        elif choice in ("postgresql", "postgres"):
            configs.append(DatabaseConfig(url=postgres))
        else:
            configs.append(DatabaseConfig(url=choice))
    return configs


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
        prog="python -m harness.stress",
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
