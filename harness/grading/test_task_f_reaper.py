"""Task F (stretch) — recover_stalled_jobs: the reaper that returns dead workers' jobs.

A running job whose claim (``claimed_at``) is older than the lease belonged to a worker that
died: the reaper returns it to the queue and counts the crash, or fails it once it has killed
``MAX_ATTEMPTS`` workers. The tests go from the plain rule to the races: what is stalled and
what is not, the poison job, the count, then a live worker renewing its claim inside the
reaper's gap (or while its write waits for the row) and two reapers at once (choreographed,
``reaper_race``), and last thousands of stalled jobs within a round-trip budget.

The harness's own lease recovery (the runner's monitor) never runs here: no test starts a
runner, so every recovery these tests see is the candidate's.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from harness.exceptions import RoundTripBudgetExceeded
from harness.sql.models import MAX_ATTEMPTS, Job, JobStatus, Step
from harness.sql.orm import utcnow

from .diagnosis import fail
from .kit import Kata, graded
from .reaper_race import (
    Change,
    Intrusion,
    ReaperPause,
    reads_of_one_reap,
    renewal_held,
    statements_of,
    write_shape,
)
from .stalled import (
    LEASE,
    ROUND_TRIPS,
    STALE,
    STALLED_AT_ONCE,
    age,
    as_count,
    is_poison,
    reap,
    recovery_problem,
    stalled_jobs,
    story,
    untouched_problem,
)


def emails(n: int, prefix: str) -> list[str]:
    return [f"{prefix}{i}@example.com" for i in range(n)]


async def judge_recovered(kata: Kata, before: list[Job], lease: float = LEASE) -> None:
    for job in before:
        problem = recovery_problem(job, await kata.fresh(job), lease)
        if problem:
            fail(problem)


@graded("F")
async def test_a_stalled_job_goes_back_to_the_queue_with_its_progress(kata: Kata) -> None:
    campaign = await kata.campaign()
    first = await stalled_jobs(kata, campaign.id, ["ada@example.com"], step=Step.ANALYZE)
    tried = await stalled_jobs(
        kata, campaign.id, ["grace@example.com"], step=Step.TAKE_ACTION, attempts=2
    )
    await reap(kata)
    await judge_recovered(kata, first + tried)


@graded("F")
async def test_a_claim_younger_than_the_lease_stays(kata: Kata) -> None:
    """Two leases (a reaper must use the one it is given, in seconds), and claims whose
    ``updated_at`` says the opposite of ``claimed_at`` (the claim is ``claimed_at``)."""
    for lease, young, old in ((600.0, 500, 700), (10.0, 2, 20)):
        await Job.all().delete()
        campaign = await kata.campaign(f"Lease {lease:g} s")
        (inside,) = await stalled_jobs(
            kata, campaign.id, [f"inside{lease:g}@example.com"], ago=timedelta(seconds=young)
        )
        (beyond,) = await stalled_jobs(
            kata, campaign.id, [f"beyond{lease:g}@example.com"], ago=timedelta(seconds=old)
        )
        kata.phase = f"recovering with a lease of {lease:g} s"
        await reap(kata, lease)
        kept = await kata.fresh(inside)
        if kept.status is not JobStatus.RUNNING or kept.attempts != inside.attempts:
            fail(
                f"with a lease of {lease:g} s, job {inside.id}, claimed {young} s ago, was taken "
                f"back from its worker ({kept.status.value}, attempts {kept.attempts}) — a claim "
                "younger than the lease is a live worker's: recover only claimed_at < now - "
                "lease_seconds, with the lease you were given, in seconds"
            )
        problem = recovery_problem(beyond, await kata.fresh(beyond), lease)
        if problem:
            fail(f"{problem} (it was claimed {old} s ago, with a lease of {lease:g} s)")
    await Job.all().delete()
    campaign = await kata.campaign("Touched rows")
    (dead,) = await stalled_jobs(kata, campaign.id, ["touched@example.com"])
    (alive,) = await stalled_jobs(kata, campaign.id, ["renewed@example.com"])
    now = utcnow()
    # An operator's note on a dead worker's job; a heartbeat that renews the claim alone.
    await kata.database.run("UPDATE jobs SET updated_at = ? WHERE id = ?", [now, dead.id])
    await kata.database.run("UPDATE jobs SET claimed_at = ? WHERE id = ?", [now, alive.id])
    dead, alive = await kata.fresh(dead), await kata.fresh(alive)
    await reap(kata)
    kept = await kata.fresh(alive)
    if kept.status is not JobStatus.RUNNING:
        fail(
            f"job {alive.id}, whose worker renewed its claim just now (claimed_at now, updated_at "
            f"{age(alive.updated_at)}), was taken back ({kept.status.value}) — the claim is "
            "claimed_at: a live worker renews claimed_at, and any write may move updated_at"
        )
    problem = recovery_problem(dead, await kata.fresh(dead), LEASE)
    if problem:
        fail(
            f"{problem} (its updated_at is recent, its claimed_at {age(dead.claimed_at)}: the "
            "claim is claimed_at, and any write may move updated_at)"
        )


@graded("F")
async def test_only_stalled_running_jobs_change(kata: Kata) -> None:
    """Pending, completed and failed jobs with old claims, a job claimed again since and a job
    whose claim was just renewed stay as they are; stalled jobs of every campaign, at every
    step, are recovered with their progress."""
    spring, winter = await kata.campaign("Spring launch"), await kata.campaign("Winter sale")
    old = utcnow() - STALE
    left_alone: dict[int, str] = {}

    async def add(email: str, why: str, **fields: object) -> None:
        (job,) = await kata.add_jobs(
            spring.id, [email], claimed_at=old, worker_id="worker-1", **fields
        )
        left_alone[job.id] = why

    await add(
        "queued@example.com",
        "a pending job the lease returned earlier (it still names its old claim)",
        attempts=1,
    )
    await add("done@example.com", "a completed job", status="completed", step="done")
    await add("failed@example.com", "a failed job", status="failed", last_error="400")
    for email, why in (
        ("reclaimed@example.com", "a running job claimed again since, 1 s ago"),
        ("renewed@example.com", "a running job whose worker renewed its claim 1 s ago"),
    ):
        (job,) = await stalled_jobs(kata, spring.id, [email], ago=timedelta(seconds=1))
        left_alone[job.id] = why
    stalled = [
        *await stalled_jobs(kata, spring.id, ["s1@example.com"], step=Step.SEND_EMAIL),
        *await stalled_jobs(kata, winter.id, ["w1@example.com"], step=Step.ANALYZE),
        *await stalled_jobs(kata, winter.id, ["w2@example.com"], step=Step.TAKE_ACTION),
    ]
    before = {job.id: job for job in await Job.all().order_by("id").all()}
    await reap(kata)
    for job_id, why in left_alone.items():
        problem = untouched_problem(before[job_id], await kata.fresh(job_id), why, LEASE)
        if problem:
            fail(problem)
    await judge_recovered(kata, stalled)


@graded("F")
async def test_a_job_that_crashed_max_attempts_workers_is_failed(kata: Kata) -> None:
    """The poison job: claimed, its worker dies, recovered; again and again. Every recovery
    counts the crash; the one that brings attempts to MAX_ATTEMPTS fails it instead."""
    campaign = await kata.campaign()
    (job,) = await stalled_jobs(kata, campaign.id, ["poison@example.com"], step=Step.ANALYZE)
    late: str | None = None  # the diagnosis of a poison job sent round again, if it was
    for crash in range(1, MAX_ATTEMPTS + 2):
        before = await kata.fresh(job)
        kata.phase = f"recovering job {job.id} after its worker's death number {crash}"
        await reap(kata)
        after = await kata.fresh(job)
        problem = recovery_problem(before, after, LEASE)
        if late is not None:
            if after.status is JobStatus.FAILED:
                fail(
                    f"job {job.id} was failed only after its worker's death number {crash}, one "
                    f"too late: death number {MAX_ATTEMPTS} sent it round the queue again "
                    f"(attempts {before.attempts}) — a job gets MAX_ATTEMPTS ({MAX_ATTEMPTS}) "
                    "tries in all, crashes included: the recovery that brings attempts to "
                    "MAX_ATTEMPTS fails it (attempts + 1 >= MAX_ATTEMPTS, counting this crash)"
                )
            fail(late)
        if problem and before.attempts + 1 >= MAX_ATTEMPTS and after.status is JobStatus.PENDING:
            late = problem
        elif problem:
            fail(problem)
        elif after.status is JobStatus.FAILED:
            return
        # The next worker claims it, and dies too.
        await kata.claim_for(job.id, f"worker-{crash + 1}")
        await Job.filter(id=job.id).update(claimed_at=utcnow() - STALE)


@graded("F")
async def test_it_returns_how_many_jobs_it_took_back(kata: Kata) -> None:
    campaign = await kata.campaign()
    returned = await stalled_jobs(kata, campaign.id, emails(3, "dead"))
    poison = await stalled_jobs(
        kata, campaign.id, ["poison@example.com"], attempts=MAX_ATTEMPTS - 1
    )
    await stalled_jobs(kata, campaign.id, ["alive@example.com"], ago=timedelta(seconds=1))
    count = await reap(kata)
    await judge_recovered(kata, returned + poison)
    taken = len(returned) + len(poison)
    if count != taken:
        left_out = (
            f" (it left out the poison job {poison[0].id} it failed)"
            if count == len(returned)
            else ""
        )
        fail(
            f"recover_stalled_jobs returned {count} after taking back {taken} stalled jobs "
            f"({len(returned)} returned to the queue, 1 failed as a poison job){left_out} — "
            "return how many jobs this call changed: those it returned to the queue plus those "
            "it failed"
        )
    again = await reap(kata)
    if again != 0:
        fail(
            f"recover_stalled_jobs returned {again} when called again with no stalled job left "
            "(it changed nothing) — count the rows your write changed (RETURNING id), not the "
            "rows you read"
        )


def _race_changes() -> list[object]:
    return [pytest.param(change, id=f"job-{change.value}-under-it") for change in Change]


async def _fresh_stalled(kata: Kata, campaign_id: int, tag: str) -> dict[int, Job]:
    await Job.all().delete()
    jobs = await stalled_jobs(kata, campaign_id, emails(3, tag))
    jobs += await stalled_jobs(
        kata, campaign_id, [f"{tag}-poison@example.com"], attempts=MAX_ATTEMPTS - 1
    )
    return {job.id: job for job in jobs}


@pytest.mark.parametrize("change", _race_changes())
@graded("F")
async def test_a_claim_renewed_under_the_reaper_keeps_its_job(kata: Kata, change: Change) -> None:
    """Deterministic: the reaper is paused right after each read of job rows in turn, and the
    first stalled job it read is renewed, completed or taken over before it may write."""
    campaign = await kata.campaign()
    targets = await _fresh_stalled(kata, campaign.id, f"count-{change.value}")
    reads = await reads_of_one_reap(kata, targets)
    for pause_at in range(1, min(reads, 3) + 1):
        targets = await _fresh_stalled(kata, campaign.id, f"pause{pause_at}-{change.value}")
        race = ReaperPause(kata, pause_at=pause_at, targets=targets, change=change)
        kata.phase = f"reaper-1 paused after read {pause_at} while a stalled job is {change}"
        with statements_of(kata) as sent, race.installed():
            count = await reap(kata)
        intrusion = race.intrusion
        if intrusion is None or not intrusion.applied:
            await judge_recovered(kata, list(targets.values()))
            continue
        job = intrusion.job
        happened = (
            f"reaper-1 read job {job.id} as stalled (`{_short(intrusion.read_sql)}`); before it "
            f"wrote, {change.story(job)}; "
        )
        await _judge_kept(kata, intrusion, happened, sent.write_of(job.id), read_first=True)
        assert intrusion.left is not None
        await _judge_the_rest(kata, targets, job, count, intrusion.left.worker_id)


async def _judge_kept(
    kata: Kata, intrusion: Intrusion, happened: str, write: str | None, *, read_first: bool
) -> None:
    """The changed job must be as the change left it."""
    job, left = intrusion.job, intrusion.left
    assert left is not None
    now = await kata.fresh(job)
    differs = [
        name
        for name in ("status", "worker_id", "claimed_at", "attempts", "step")
        if getattr(now, name) != getattr(left, name)
    ]
    if not differs:
        return
    kata.explain([job.id], ["reaper-1", left.worker_id or "worker-9"])
    shape = write_shape(write)
    how = f" ({shape})" if shape else ""
    did = f"reaper-1 then set it {now.status.value}, attempts {left.attempts} → {now.attempts}"
    if intrusion.change is Change.COMPLETED:
        fail(
            f"{happened}{did}{how}: a finished job goes round the queue again — the write must "
            "re-check what it read, status = 'running' as well as the claim, in its own WHERE "
            "(WHERE id = ? AND status = 'running' AND claimed_at = ?), and change nothing when "
            "no row matches"
        )
    taken = "worker-9's job" if intrusion.change is Change.TAKEN_OVER else "a live worker's job"
    remedy = (
        "the write must re-check the claim it read, in its own WHERE: WHERE id = ? AND status "
        "= 'running' AND claimed_at = <the claimed_at you read> (or claimed_at < the cutoff), "
        "and change nothing when no row matches"
    )
    if not read_first:
        remedy = (
            "on PostgreSQL an UPDATE that waited for a row's lock re-checks its own WHERE on the "
            "new row, but not its sub-select's: repeat the condition in the outer WHERE (AND "
            "status = 'running' AND claimed_at < ?), or lock the sub-select's rows (FOR UPDATE "
            "SKIP LOCKED)"
        )
    fail(f"{happened}{did}{how}, taking {taken}: two workers will run it — {remedy}")


async def _judge_the_rest(
    kata: Kata, targets: dict[int, Job], spared: Job, count: int, other: str | None
) -> None:
    """Every other stalled job recovered, and the count is what the reaper changed."""
    rest = [job for job_id, job in targets.items() if job_id != spared.id]
    await judge_recovered(kata, rest)
    if count != len(rest):
        kata.explain([spared.id], ["reaper-1", other or "worker-9"])
        fail(
            f"recover_stalled_jobs returned {count}, but it took back {len(rest)} jobs: job "
            f"{spared.id}, which it read as stalled, was no longer stalled when it wrote and was "
            "left alone — count the rows your write changed (RETURNING id, or the update's row "
            "count), not the rows you read"
        )


@graded("F")
async def test_a_renewal_the_reapers_write_waits_for_keeps_its_job(kata: Kata) -> None:
    """The renewal holds the row (its transaction open) until the reaper waits for it, then
    commits: the reaper's write runs on the renewed row, whatever shape it has."""
    campaign = await kata.campaign()
    targets = await _fresh_stalled(kata, campaign.id, "held")
    job = next(iter(targets.values()))
    kata.phase = f"reaper-1 recovering while job {job.id}'s renewal holds its row"
    with statements_of(kata) as sent:
        async with renewal_held(kata, job) as held:
            reaper = asyncio.create_task(reap(kata))
            await held.commit_when_waited_for(reaper)
            count = await reaper
    assert held.left is not None
    intrusion = Intrusion(job, "", True, change=Change.RENEWED, left=held.left)
    read_first = sent.read_before_writing()
    happened = (
        f"{job.worker_id} renewed its claim on job {job.id} (claimed_at now: it is alive) while "
        f"reaper-1's {'write' if held.waited else 'call'} waited for that row, and committed; "
    )
    await _judge_kept(kata, intrusion, happened, sent.write_of(job.id), read_first=read_first)
    await _judge_the_rest(kata, targets, job, count, job.worker_id)


@graded("F")
async def test_two_reapers_at_once_recover_each_job_once(kata: Kata) -> None:
    """Deterministic: reaper-1 is paused after each of its reads in turn while reaper-2 runs from
    start to end; then reaper-1 goes on. Each job is recovered once and counted once."""
    campaign = await kata.campaign()
    targets = await _fresh_stalled(kata, campaign.id, "count-two")
    reads = await reads_of_one_reap(kata, targets)
    for pause_at in range(0, min(reads, 3) + 1):
        targets = await _fresh_stalled(kata, campaign.id, f"two{pause_at}")
        race = ReaperPause(kata, pause_at=pause_at, targets=targets, change=None)
        kata.phase = f"reaper-2 running while reaper-1 is paused after read {pause_at}"
        with statements_of(kata) as sent, race.installed():
            first = await reap(kata)
        intrusion = race.intrusion
        if intrusion is None or intrusion.second is None:
            # No gap to pause in (or its read locked the rows): the second reaper comes after.
            second = await reap(kata, worker="reaper-2")
        else:
            second = as_count(await intrusion.second)
        for job in targets.values():
            now = await kata.fresh(job)
            if now.attempts > job.attempts + 1 or (
                is_poison(job) and now.status is not JobStatus.FAILED
            ):
                kata.explain([job.id], ["reaper-1", "reaper-2"])
                shape = write_shape(sent.write_of(job.id))
                how = f": {shape}" if shape else ""
                read = f" (`{_short(intrusion.read_sql)}`)" if intrusion else ""
                fail(
                    f"{story(job, LEASE)} was recovered twice: reaper-1 read it as stalled"
                    f"{read}, reaper-2 then recovered it, and reaper-1 recovered it again "
                    f"(now {now.status.value}, attempts {job.attempts} → {now.attempts}){how} — "
                    "the write must re-check that the job is still running under the claim it "
                    "read (WHERE id = ? AND status = 'running' AND claimed_at = ?: running, not "
                    "merely unfinished, since the other reaper left it pending), and change "
                    "nothing when it is not"
                )
        await judge_recovered(kata, list(targets.values()))
        if first + second != len(targets):
            kata.explain([next(iter(targets))], ["reaper-1", "reaper-2"])
            fail(
                f"two reapers recovered {len(targets)} stalled jobs between them, each once, but "
                f"returned {first} (reaper-1) and {second} (reaper-2), {first + second} in all — "
                "count the rows your write changed (RETURNING id, or the update's row count), not "
                "the rows you read: a job another reaper took first is not yours"
            )


@graded("F", timeout=60)
async def test_thousands_of_stalled_jobs_in_a_few_round_trips(kata: Kata) -> None:
    total = STALLED_AT_ONCE[kata.tier]
    campaign = await kata.campaign()
    poison = total // 10
    await stalled_jobs(
        kata, campaign.id, emails(poison, "poison"), attempts=MAX_ATTEMPTS - 1, as_jobs=False
    )
    await stalled_jobs(kata, campaign.id, emails(total - poison, "dead"), as_jobs=False)
    trips = kata.database.round_trips
    trips.reset()
    trips.limit = ROUND_TRIPS
    count: int | None = None
    try:
        count = await reap(kata)
    except (Exception, RoundTripBudgetExceeded):
        if trips.exceeded is None:
            raise
    finally:
        trips.limit = None
    running = await Job.filter(status=JobStatus.RUNNING).count()
    if trips.exceeded is not None:
        done = total - running
        fail(
            f"recovering {total:,} stalled jobs went over the budget of {ROUND_TRIPS} "
            f"round trips: stopped at statement {ROUND_TRIPS + 1} after {trips.exceeded.writes} "
            f"writes, {done:,} jobs recovered — "
            + (
                "one statement per job"
                if trips.exceeded.writes >= ROUND_TRIPS // 2 and done <= ROUND_TRIPS
                else "batches too small"
            )
            + ": recover them all in one statement (UPDATE jobs SET ... WHERE status = "
            "'running' AND claimed_at < ? RETURNING id), or in batches of hundreds of jobs"
        )
    if running:
        fail(
            f"one call of recover_stalled_jobs left {running:,} of {total:,} stalled "
            f"jobs running — recover every stalled job in one call: a batch with a LIMIT must "
            "go on until no stalled job is left"
        )
    failed = await Job.filter(status=JobStatus.FAILED).count()
    if failed != poison:
        fail(
            f"of {total:,} stalled jobs, {poison:,} had attempts {MAX_ATTEMPTS - 1} "
            f"(this crash makes MAX_ATTEMPTS) and {failed:,} were failed — fail exactly those "
            "whose recovery brings attempts to MAX_ATTEMPTS"
        )
    if count != total:
        fail(
            f"recover_stalled_jobs returned {count} after taking back {total:,} "
            "stalled jobs — return how many jobs this call changed"
        )


def _short(sql: str, limit: int = 90) -> str:
    sql = " ".join(sql.split())
    return sql if len(sql) <= limit else sql[: limit - 3] + "..."
