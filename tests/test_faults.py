"""Fault plans: validated configuration, and decisions that are a pure function of their inputs."""

from __future__ import annotations

import random
import statistics

import pytest

from harness.world.faults import (
    Decision,
    Fault,
    FaultPlan,
    Latency,
    RateLimit,
    ScriptedOutcome,
    ServiceFaults,
    Succeed,
    TimeoutAfter,
    TimeoutBefore,
)

# -- latency ------------------------------------------------------------------------------------


def test_no_latency_samples_zero() -> None:
    rng = random.Random(1)
    assert {Latency.none().sample(rng) for _ in range(100)} == {0.0}


def test_constant_latency_samples_the_constant() -> None:
    rng = random.Random(1)
    assert {Latency.constant(0.005).sample(rng) for _ in range(100)} == {0.005}


def test_latency_is_skewed_with_the_requested_median_and_p99() -> None:
    latency = Latency(median=0.01, p99=0.1)
    rng = random.Random(7)
    samples = sorted(latency.sample(rng) for _ in range(20_000))
    assert statistics.median(samples) == pytest.approx(0.01, rel=0.1)
    assert samples[int(len(samples) * 0.99)] == pytest.approx(0.1, rel=0.2)
    assert max(samples) <= 0.4  # capped: a test must not stall on one extreme draw


def test_latency_rejects_p99_below_median_and_negative_median() -> None:
    with pytest.raises(ValueError, match="p99"):
        Latency(median=0.01, p99=0.001)
    with pytest.raises(ValueError, match="median"):
        Latency(median=-1)


# -- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"rate_limit": -0.1},
        {"timeout_before": 1.5},
        {"rate_limit": 0.6, "timeout_after": 0.6},
        {"retry_after": (0.3, 0.1)},
        {"retry_after": (-0.1, 0.1)},
        {"timeout_seconds": -1},
    ],
)
def test_service_faults_reject_impossible_configuration(options: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ServiceFaults(**options)  # type: ignore[arg-type]


def test_service_faults_accept_rates_adding_up_to_exactly_one() -> None:
    ServiceFaults(rate_limit=0.5, timeout_before=0.25, timeout_after=0.25)


def test_configuration_is_keyword_only_and_frozen() -> None:
    with pytest.raises(TypeError):
        ServiceFaults(0.1)  # type: ignore[misc]
    plan = FaultPlan.none()
    with pytest.raises(AttributeError):
        plan.seed = 3  # type: ignore[misc]


def test_chaos_rate_is_bounded_so_faults_add_up_to_at_most_one() -> None:
    with pytest.raises(ValueError, match="chaos rate"):
        FaultPlan.chaos(1, rate=0.6)


# -- decisions ----------------------------------------------------------------------------------


def test_no_fault_plan_lets_every_call_through_without_latency() -> None:
    plan = FaultPlan.none()
    for service in ("sendgrid", "sentiment", "crm"):
        for n in range(1, 50):
            decision = plan.decide(service, f"user{n}@example.com", n)
            assert decision.outcome is Fault.NONE
            assert decision.latency == 0.0
            assert decision.retry_after == 0.0


def test_decide_is_a_pure_function_of_seed_service_subject_and_n() -> None:
    plan = FaultPlan.chaos(42, rate=0.3)
    questions = [
        (s, f"c{i}@example.com", n)
        for s in ("sendgrid", "crm")
        for i in range(30)
        for n in range(1, 4)
    ]
    in_order = {q: plan.decide(*q) for q in questions}
    shuffled = questions[:]
    random.Random(5).shuffle(shuffled)
    # Asking in another order (as interleaved workers would), or asking twice, changes nothing.
    assert {q: plan.decide(*q) for q in shuffled} == in_order
    assert {q: FaultPlan.chaos(42, rate=0.3).decide(*q) for q in questions} == in_order


def test_decisions_differ_between_seeds_subjects_and_call_numbers() -> None:
    def outcomes(plan: FaultPlan, subject: str, n: int = 1) -> list[Decision]:
        return [plan.decide("sendgrid", f"{subject}{i}", n) for i in range(200)]

    plan = FaultPlan.chaos(1, rate=0.3)
    assert outcomes(plan, "a") != outcomes(FaultPlan.chaos(2, rate=0.3), "a")
    assert outcomes(plan, "a") != outcomes(plan, "b")
    assert outcomes(plan, "a", 1) != outcomes(plan, "a", 2)


def test_fault_frequencies_follow_the_configured_rates() -> None:
    faults = ServiceFaults(rate_limit=0.2, timeout_before=0.1, timeout_after=0.05)
    plan = FaultPlan(seed=3, sendgrid=faults)
    counts = {fault: 0 for fault in Fault}
    for i in range(10_000):
        counts[plan.decide("sendgrid", f"x{i}@example.com", 1).outcome] += 1
    assert counts[Fault.RATE_LIMIT] / 10_000 == pytest.approx(0.2, abs=0.02)
    assert counts[Fault.TIMEOUT_BEFORE] / 10_000 == pytest.approx(0.1, abs=0.02)
    assert counts[Fault.TIMEOUT_AFTER] / 10_000 == pytest.approx(0.05, abs=0.02)
    # Other services keep their own (default: fault-free) settings.
    assert plan.decide("crm", "x1@example.com", 1).outcome is Fault.NONE


def test_rate_limits_carry_a_retry_after_from_the_configured_range() -> None:
    faults = ServiceFaults(rate_limit=1.0, retry_after=(0.01, 0.03), timeout_seconds=0.005)
    plan = FaultPlan(seed=9, sentiment=faults)
    decisions = [plan.decide("sentiment", f"text {i}", 1) for i in range(500)]
    assert all(d.outcome is Fault.RATE_LIMIT for d in decisions)
    assert all(0.01 <= d.retry_after <= 0.03 for d in decisions)
    assert len({d.retry_after for d in decisions}) > 400
    assert {d.timeout_seconds for d in decisions} == {0.005}


def test_chaos_injects_every_fault_kind_with_latency() -> None:
    plan = FaultPlan.chaos(7)
    for service in ("sendgrid", "sentiment", "crm"):
        decisions = [plan.decide(service, f"s{i}", 1) for i in range(2_000)]
        assert {d.outcome for d in decisions} == set(Fault)
        assert all(d.latency > 0 for d in decisions)


def test_script_outcomes_come_in_order_then_the_random_plan_takes_over() -> None:
    subject = "a@example.com"
    plan = FaultPlan(
        seed=5,
        sendgrid=ServiceFaults(rate_limit=1.0),
        script={
            ("sendgrid", subject): [
                RateLimit(0.2),
                RateLimit(0.3),
                TimeoutAfter(),
                TimeoutBefore(),
                Succeed(),
            ]
        },
    )
    decisions = [plan.decide("sendgrid", subject, n) for n in range(1, 8)]
    assert [(d.outcome, d.retry_after) for d in decisions[:5]] == [
        (Fault.RATE_LIMIT, 0.2),
        (Fault.RATE_LIMIT, 0.3),
        (Fault.TIMEOUT_AFTER, 0.0),
        (Fault.TIMEOUT_BEFORE, 0.0),
        (Fault.NONE, 0.0),
    ]
    assert all(d.scripted for d in decisions[:5])
    # After the script: the random plan (here, rate limited every time).
    assert [(d.outcome, d.scripted) for d in decisions[5:]] == [(Fault.RATE_LIMIT, False)] * 2
    # Other subjects are not scripted.
    assert plan.decide("sendgrid", "b@example.com", 1).scripted is False


def test_a_script_is_copied_so_later_changes_do_not_leak_into_the_plan() -> None:
    outcomes: list[ScriptedOutcome] = [RateLimit(0.1)]
    script: dict[tuple[str, str], list[ScriptedOutcome]] = {("crm", "a@example.com"): outcomes}
    plan = FaultPlan(script=script)
    outcomes.append(TimeoutBefore())
    script[("crm", "b@example.com")] = [TimeoutBefore()]
    assert plan.decide("crm", "a@example.com", 2).outcome is Fault.NONE
    assert plan.decide("crm", "b@example.com", 1).outcome is Fault.NONE


def test_scripts_reject_unknown_services_and_things_that_are_not_outcomes() -> None:
    with pytest.raises(ValueError, match="unknown service"):
        FaultPlan(script={("mailgun", "a@example.com"): [Succeed()]})
    with pytest.raises(TypeError, match="RateLimit"):
        FaultPlan(script={("crm", "a@example.com"): ["rate_limit"]})  # type: ignore[list-item]


def test_decide_rejects_unknown_services_and_call_numbers_below_one() -> None:
    plan = FaultPlan.none()
    with pytest.raises(ValueError, match="unknown service"):
        plan.decide("mailgun", "a@example.com", 1)
    with pytest.raises(ValueError, match="from 1"):
        plan.decide("crm", "a@example.com", 0)
