"""Task A — claim_next_job: atomic, exactly once, oldest first, never giving up early."""

from __future__ import annotations

import asyncio
import multiprocessing
from collections import Counter, defaultdict
from concurrent.futures import ProcessPoolExecutor
from datetime import timedelta

from harness.models import Job, JobStatus
from harness.orm import utcnow

from .diagnosis import fail
from .kit import Kata, graded
from .processes import claim_in_process


def emails(n: int, prefix: str = "customer") -> list[str]:
    return [f"{prefix}{i}@example.com" for i in range(n)]


@graded("A")
async def test_empty_queue_gives_none(kata: Kata) -> None:
    job = await kata.call("claim_next_job", "worker-1", worker="worker-1")
    if job is not None:
        fail(f"claim_next_job returned {job!r} from an empty queue — it should return None")


@graded("A")
async def test_claims_only_pending_jobs_whose_run_after_has_come(kata: Kata) -> None:
    campaign = await kata.campaign()
    later = utcnow() + timedelta(hours=1)
    await kata.add_jobs(campaign.id, ["running@example.com"], status="running", worker_id="w9")
    await kata.add_jobs(campaign.id, ["done@example.com"], status="completed", step="done")
    await kata.add_jobs(campaign.id, ["failed@example.com"], status="failed")
    await kata.add_jobs(campaign.id, ["later@example.com"], run_after=later)
    job = await kata.call("claim_next_job", "worker-1", worker="worker-1")
    if job is not None:
        why = (
            "its run_after is an hour away"
            if job.email == "later@example.com"
            else f"it is {job.email.split('@')[0]}, not pending"
        )
        fail(
            f"claim_next_job claimed job {job.id} although {why} — claim only status 'pending' "
            "with run_after <= now"
        )
    (due,) = await kata.add_jobs(campaign.id, ["due@example.com"])
    job = await kata.call("claim_next_job", "worker-1", worker="worker-1")
    if job is None or job.id != due.id:
        fail(f"claim_next_job returned {job!r} although job {due.id} is pending and due")


@graded("A")
async def test_lone_worker_claims_in_id_order(kata: Kata) -> None:
    campaign = await kata.campaign()
    jobs = [*await kata.add_jobs(campaign.id, emails(10, "a"))]
    jobs += await kata.add_jobs(campaign.id, emails(10, "b"))
    claimed = []
    for _ in range(len(jobs) + 1):
        job = await kata.call("claim_next_job", "worker-1", worker="worker-1")
        if job is None:
            break
        claimed.append(job.id)
    expected = [job.id for job in jobs]
    if claimed != expected:
        fail(
            f"a lone worker claimed jobs in the order {claimed[:8]}..., expected {expected[:8]}... "
            "— claim the oldest claimable job first (ORDER BY run_after, id)"
        )


@graded("A")
async def test_claim_records_worker_and_claimed_at(kata: Kata) -> None:
    campaign = await kata.campaign()
    (created,) = await kata.add_jobs(campaign.id, ["ada@example.com"])
    before = utcnow()
    job = await kata.call("claim_next_job", "worker-7", worker="worker-7")
    after = utcnow()
    if job is None:
        fail("claim_next_job returned None although one job was pending and due")
    if not isinstance(job, Job):
        fail(
            f"claim_next_job returned a {type(job).__name__}, not a Job "
            "(Job.from_row(row) builds one)"
        )
    stored = await kata.fresh(created)
    for where, seen in (("the returned job", job), ("the database", stored)):
        if seen.status != JobStatus.RUNNING:
            fail(f"after the claim, {where} says status {seen.status.value!r}, expected 'running'")
        if seen.worker_id != "worker-7":
            fail(f"after the claim, {where} says worker_id {seen.worker_id!r}, expected 'worker-7'")
        slack = timedelta(seconds=2)
        if seen.claimed_at is None or not before - slack <= seen.claimed_at <= after + slack:
            fail(
                f"after the claim, {where} says claimed_at {seen.claimed_at!r}, expected the "
                "time of the claim (a timezone-aware UTC datetime)"
            )


async def _claim_concurrently(kata: Kata, total: int, workers: int) -> None:
    campaign = await kata.campaign()
    await kata.add_jobs(campaign.id, emails(total))
    claimed_by: dict[int, list[str]] = defaultdict(list)
    gave_up: list[tuple[str, int]] = []

    async def worker(name: str) -> None:
        for _ in range(total + 1):
            job = await kata.call("claim_next_job", name, worker=name)
            if job is None:
                left = await Job.filter(status=JobStatus.PENDING).count()
                gave_up.append((name, left))
                return
            claimed_by[job.id].append(name)
        fail(f"{name} claimed more jobs than exist — claims are not exclusive")

    try:
        await asyncio.gather(*(worker(f"worker-{i + 1}") for i in range(workers)))
    except Exception as error:
        if "database is locked" in str(error):
            fail(
                f"claim_next_job failed with 'database is locked' under {workers} concurrent "
                "workers: a transaction that reads and then writes cannot upgrade its lock while "
                "others write — claim with one UPDATE ... RETURNING statement"
            )
        raise
    _judge(claimed_by, total, gave_up, kata.sizes.claim_workers)


def _judge(
    claimed_by: dict[int, list[str]], total: int, gave_up: list[tuple[str, int]], workers: int
) -> None:
    doubles = {job: names for job, names in claimed_by.items() if len(names) > 1}
    if doubles:
        job, names = min(doubles.items())
        who = " and ".join(sorted(set(names))[:3]) + (
            f" (+{len(set(names)) - 3} more)" if len(set(names)) > 3 else ""
        )
        fail(
            f"job {job} was claimed by {who} ({len(doubles)} jobs claimed "
            "more than once) — the select and the update are not one atomic step"
        )
    # FOR UPDATE SKIP LOCKED may rightly answer None while rows are pending but locked by other
    # claimers in flight — at most one row each. More pending rows than workers is giving up.
    early = [(name, left) for name, left in gave_up if left > workers]
    if early:
        name, left = max(early, key=lambda g: g[1])
        fail(
            f"{name} got None while {left} jobs were still pending ({len(early)} workers gave up "
            "early) — a claim that loses a race must try again, not report an empty queue"
        )
    missing = total - len(claimed_by)
    if missing:
        fail(
            f"{missing} of {total} jobs were never claimed although every worker stopped — "
            "claim_next_job answered None while claimable jobs remained"
        )


@graded("A", timeout=90)
async def test_twenty_workers_claim_every_job_exactly_once(kata: Kata) -> None:
    for trial in range(kata.sizes.claim_trials):
        kata.phase = f"trial {trial + 1}: 20 workers claiming"
        await _claim_concurrently(kata, kata.sizes.claim_jobs, kata.sizes.claim_workers)
        await Job.all().delete()


@graded("A", timeout=120, full_only=True)
async def test_workers_in_separate_processes_claim_every_job_exactly_once(kata: Kata) -> None:
    total = kata.sizes.claim_jobs
    campaign = await kata.campaign()
    await kata.add_jobs(campaign.id, emails(total))
    processes = kata.sizes.claim_processes
    per_process = max(1, kata.sizes.claim_workers // processes)
    kata.phase = f"{processes} processes x {per_process} workers claiming"
    loop = asyncio.get_running_loop()
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(processes, mp_context=context) as pool:
        results = await asyncio.gather(
            *(
                loop.run_in_executor(
                    pool,
                    claim_in_process,
                    kata.database.config,
                    str(kata.solution.path),
                    f"p{i + 1}",
                    per_process,
                )
                for i in range(processes)
            )
        )
    claimed_by: dict[int, list[str]] = defaultdict(list)
    for claims, error in results:
        if error:
            fail(f"claim_next_job raised in a worker process: {error}")
        for name, job_id in claims:
            claimed_by[job_id].append(name)
    _judge(claimed_by, total, [], processes * per_process)
    counts = Counter(j.status for j in await Job.all().all())
    if counts.get(JobStatus.RUNNING, 0) != total:
        fail(
            f"after every job was claimed the database holds {dict(counts)} — "
            "each claimed job must be stored as running"
        )
