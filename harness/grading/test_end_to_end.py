"""End to end — twenty workers drain a campaign while the APIs fail and workers crash.

The candidate's whole solution runs in the contract's worker loop (``harness.worker.runner``): its
``claim_next_job`` and ``process_job``, over a campaign with a couple of undeliverable addresses,
under ``FaultPlan.chaos`` (429s, timeouts that hid a delivery, latency) and a ``CrashPlan`` that
kills workers right after external effects and right before database writes. A crashed worker's
job goes back to the queue when its lease runs out. Then the contract's five invariants are
judged by ``invariants.check_invariants``.
"""

from __future__ import annotations

from harness.worker.runner import Runner, RunnerConfig
from harness.world import World
from harness.world.crashes import CrashPlan
from harness.world.faults import FaultPlan

from .diagnosis import fail
from .invariants import drain_and_judge
from .kit import Kata, graded

_WORKERS = 20
#: Long enough that a live worker's heartbeat always renews its claim on a busy machine, short
#: enough that a crashed worker's job is soon back in the queue.
_LEASE = 1.0
_CRASH_RATE = 0.02
_INVALID_ADDRESSES = 2


def _campaign_emails(count: int, invalid: int) -> list[str]:
    """``count`` customers, ``invalid`` of them undeliverable (``.invalid``), spread out."""
    bad = {(k + 1) * count // (invalid + 1) for k in range(invalid)}
    return [
        f"bounce.{i}@example.invalid" if i in bad else f"customer.{i}@example.com"
        for i in range(count)
    ]


@graded("E", timeout=120)
async def test_twenty_workers_drain_a_campaign_under_faults_and_crashes(kata: Kata) -> None:
    campaign = await kata.campaign()
    total = kata.sizes.e2e_jobs
    jobs = await kata.add_jobs(campaign.id, _campaign_emails(total, _INVALID_ADDRESSES))
    crash_plan = CrashPlan(
        seed=kata.seed, after_effect_rate=_CRASH_RATE, before_write_rate=_CRASH_RATE
    )
    config = RunnerConfig(workers=_WORKERS, lease=_LEASE, deadline=90)
    kata.phase = f"{_WORKERS} workers draining {total} jobs under faults and crashes"
    with kata.faults(FaultPlan.chaos(kata.seed)) as services:
        world = World(kata.database, services, crash_plan=crash_plan)
        runner = Runner(kata.solution, config, world=world)
        kata.watch(services, crash_plan)
        problems = await drain_and_judge(runner, jobs=jobs)
    if problems:
        kata.explain_problem(problems[0])
        more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
        fail(f"{problems[0]}{more}")
