"""Crash injection: explicit points fire once where they say, random crashes are seeded, and a job
never crashes more than its cap."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from harness.exceptions import WorkerCrashed
from harness.scope import acting_as
from harness.sql.database import execute_sql, open_database
from harness.world.crashes import (
    CrashKind,
    CrashPlan,
    CrashPoint,
    active_crash_plan,
    check_after_effect,
    check_before_write,
    use_crash_plan,
)
from harness.world.services import Services

A = "ada@example.com"


def writes_until_crash(plan: CrashPlan, job_id: int, writes: int) -> int | None:
    """Simulate ``writes`` database writes for a job; return the number of the one that crashed."""
    with use_crash_plan(plan), acting_as("worker-1", job_id):
        for n in range(1, writes + 1):
            try:
                check_before_write()
            except WorkerCrashed:
                return n
    return None


# -- after an effect ----------------------------------------------------------------------------


async def test_after_effect_crashes_once_right_after_the_email_was_delivered() -> None:
    services = Services()
    plan = CrashPlan(points=[CrashPoint.after_effect("sendgrid")])
    with use_crash_plan(plan), acting_as("worker-2", job_id=9):
        with pytest.raises(WorkerCrashed) as caught:
            try:
                await services.send_email(A, "Hello", "job-9")
            except Exception:  # what a careless candidate writes; it must not swallow a crash
                pytest.fail("WorkerCrashed was caught by `except Exception`")
        [delivery] = services.ledger.deliveries  # the effect happened before the crash
        assert caught.value.point == (
            f"after sendgrid delivered message {delivery.message_id} to {A} for job 9"
        )
        # The job is processed again: the key replays, nothing new takes effect, no crash.
        assert await services.send_email(A, "Hello", "job-9") == delivery.message_id
    assert len(services.ledger.deliveries) == 1
    assert [c.outcome for c in services.ledger.calls] == ["crashed", "replayed"]
    [crash] = plan.crashes
    assert (crash.job_id, crash.kind, crash.caller, crash.explicit) == (
        9,
        CrashKind.AFTER_EFFECT,
        "worker-2",
        True,
    )


async def test_after_effect_counts_effects_per_service_and_job() -> None:
    services = Services()
    plan = CrashPlan(points=[CrashPoint.after_effect("crm", nth=2)])
    with use_crash_plan(plan), acting_as("worker-1", job_id=1):
        await services.send_email(A, "Hello", "k1")  # another service: not counted
        await services.route_customer(A, "positive", "crm-1")
        with pytest.raises(WorkerCrashed, match="after crm applied sales_followup"):
            await services.route_customer(A, "positive", "crm-2")
        await services.route_customer(A, "positive", "crm-3")
    assert len(services.ledger.actions) == 3
    assert len(plan.crashes) == 1


async def test_a_point_for_one_job_leaves_other_jobs_alone() -> None:
    services = Services()
    plan = CrashPlan(points=[CrashPoint.after_effect("sendgrid", job_id=2)])
    with use_crash_plan(plan):
        for job_id in (1, 3, 2):
            with acting_as("w", job_id), contextlib.suppress(WorkerCrashed):
                await services.send_email(f"c{job_id}@example.com", "Hello", f"job-{job_id}")
    assert [c.job_id for c in plan.crashes] == [2]


async def test_a_point_for_any_job_fires_once_in_every_job() -> None:
    services = Services()
    plan = CrashPlan(points=[CrashPoint.after_effect("sendgrid")])
    with use_crash_plan(plan):
        for job_id in (1, 2, 3):
            with acting_as("w", job_id):
                for _ in range(2):
                    with contextlib.suppress(WorkerCrashed):
                        await services.send_email(f"c{job_id}@example.com", "Hi", f"job-{job_id}")
    assert [c.job_id for c in plan.crashes] == [1, 2, 3]
    assert len(services.ledger.deliveries) == 3


def test_hooks_do_nothing_without_a_plan_or_without_a_job() -> None:
    with acting_as("w", job_id=1):
        check_before_write()
        check_after_effect("sendgrid")
    plan = CrashPlan(
        points=[CrashPoint.before_write(1), CrashPoint.after_effect("crm")], max_crashes_per_job=2
    )
    with use_crash_plan(plan), acting_as("w", job_id=None):
        check_before_write()
        check_after_effect("crm")
    assert plan.crashes == []


def test_the_active_plan_is_scoped_to_the_with_block() -> None:
    plan = CrashPlan()
    assert active_crash_plan() is None
    with use_crash_plan(plan):
        assert active_crash_plan() is plan
    assert active_crash_plan() is None


# -- before a write -----------------------------------------------------------------------------


def test_before_write_fires_right_before_the_nth_write_of_the_job() -> None:
    plan = CrashPlan(points=[CrashPoint.before_write(3)])
    assert writes_until_crash(plan, job_id=4, writes=10) == 3
    [crash] = plan.crashes
    assert crash.point == "before database write #3 of job 4"
    assert (crash.job_id, crash.kind) == (4, CrashKind.BEFORE_WRITE)


def test_before_write_fires_once_even_when_the_job_keeps_writing() -> None:
    plan = CrashPlan(points=[CrashPoint.before_write(2)])
    assert writes_until_crash(plan, job_id=1, writes=5) == 2
    # The job is picked up again; writes keep counting (3, 4, ...) and the point has fired.
    assert writes_until_crash(plan, job_id=1, writes=5) is None
    assert len(plan.crashes) == 1


async def test_the_database_layer_crashes_before_the_nth_write(tmp_path: Path) -> None:
    plan = CrashPlan(points=[CrashPoint.before_write(2)])
    async with open_database(f"sqlite:///{tmp_path}/t.db", latency=0.0):
        await execute_sql("CREATE TABLE t (n INTEGER)")
        with use_crash_plan(plan), acting_as("worker-1", job_id=7):
            await execute_sql("INSERT INTO t VALUES (1)")
            await execute_sql("SELECT * FROM t")  # reads are not writes
            with pytest.raises(WorkerCrashed, match="before database write #2 of job 7"):
                await execute_sql("INSERT INTO t VALUES (2)")
        assert await execute_sql("SELECT n FROM t") == [{"n": 1}]


# -- caps, validation, random mode --------------------------------------------------------------


def test_a_plan_refuses_more_explicit_points_than_a_job_may_crash() -> None:
    with pytest.raises(ValueError, match="max_crashes_per_job"):
        CrashPlan(points=[CrashPoint.before_write(1), CrashPoint.before_write(2, job_id=3)])
    CrashPlan(
        points=[CrashPoint.before_write(1), CrashPoint.before_write(2, job_id=3)],
        max_crashes_per_job=2,
    )


def test_crash_points_are_validated() -> None:
    with pytest.raises(ValueError, match="from 1"):
        CrashPoint.before_write(0)
    with pytest.raises(ValueError, match="service"):
        CrashPoint.after_effect("mailgun")
    with pytest.raises(ValueError, match="probability"):
        CrashPlan(before_write_rate=1.5)


@pytest.mark.parametrize("cap", [0, 1, 3])
def test_random_crashes_respect_max_crashes_per_job(cap: int) -> None:
    plan = CrashPlan(seed=1, before_write_rate=1.0, max_crashes_per_job=cap)
    for job_id in range(20):
        for _ in range(cap + 5):  # the job is retried after each crash until it completes
            if writes_until_crash(plan, job_id, writes=4) is None:
                break
        assert len(plan.crashes_of(job_id)) == cap


def test_random_crashes_leave_room_for_the_explicit_points() -> None:
    plan = CrashPlan(
        seed=1, before_write_rate=1.0, max_crashes_per_job=2, points=[CrashPoint.before_write(5)]
    )
    crashed_at = [writes_until_crash(plan, job_id=1, writes=10) for _ in range(3)]
    assert crashed_at == [1, 4, None]  # write #1 (random), then #5 = the 4th of the second run
    assert [c.explicit for c in plan.crashes] == [False, True]


def random_crashes(seed: int) -> list[tuple[int, str]]:
    plan = CrashPlan(seed=seed, before_write_rate=0.1, after_effect_rate=0.3)
    for job_id in range(100):
        with use_crash_plan(plan), acting_as("w", job_id):
            for _ in range(3):
                try:
                    check_after_effect("sendgrid")
                    for _ in range(4):
                        check_before_write()
                except WorkerCrashed:
                    continue
    return [(c.job_id, c.point) for c in plan.crashes]


def test_random_crashes_are_deterministic_per_seed() -> None:
    first = random_crashes(5)
    assert first == random_crashes(5)
    assert first != random_crashes(6)
    assert 20 < len(first) <= 100  # at most one per job (the default cap)
    assert len({job for job, _ in first}) == len(first)


def test_reset_forgets_progress_so_a_plan_can_be_reused() -> None:
    plan = CrashPlan(points=[CrashPoint.before_write(1)])
    assert writes_until_crash(plan, job_id=1, writes=2) == 1
    plan.reset()
    assert plan.crashes == []
    assert writes_until_crash(plan, job_id=1, writes=2) == 1
