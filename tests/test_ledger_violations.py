"""Violations the fakes detect, the evidence they carry, and the ledger's queries."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import pytest

from harness.exceptions import (
    IdempotencyKeyReusedError,
    InvalidEmailError,
    RateLimitError,
    ServiceTimeoutError,
)
from harness.scope import acting_as
from harness.sql.database import open_database
from harness.sql.transactions import transaction
from harness.world.faults import (
    FaultPlan,
    RateLimit,
    ScriptedOutcome,
    ServiceFaults,
    TimeoutBefore,
)
from harness.world.ledger import Call, Ledger, ViolationKind
from harness.world.services import Services

A = "ada@example.com"


def scripted(service: str, subject: str, *outcomes: ScriptedOutcome) -> Services:
    return Services(FaultPlan(script={(service, subject): list(outcomes)}))


# -- calling inside a transaction ---------------------------------------------------------------


async def test_a_call_inside_a_database_transaction_is_flagged_and_still_proceeds(
    tmp_path: Path,
) -> None:
    services = Services()
    async with open_database(f"sqlite:///{tmp_path}/t.db", latency=0.0):
        with acting_as("worker-3", job_id=17):
            async with transaction():
                message_id = await services.send_email(A, "Hello", "job-17")
            await services.get_reply(message_id)  # after commit: fine
    [violation] = services.ledger.violations
    assert violation.kind is ViolationKind.CALL_IN_TRANSACTION
    assert (violation.service, violation.subject, violation.caller, violation.job_id) == (
        "sendgrid",
        A,
        "worker-3",
        17,
    )
    assert (
        "send_email to ada@example.com was called by worker-3 on job 17 while it held a "
        "database transaction" in violation.detail
    )
    assert [c.in_transaction for c in services.ledger.calls] == [True, False]
    assert len(services.ledger.deliveries) == 1  # recorded, not refused


async def test_a_task_spawned_inside_a_transaction_does_not_hold_it(tmp_path: Path) -> None:
    services = Services()
    async with open_database(f"sqlite:///{tmp_path}/t.db", latency=0.0), transaction():
        await asyncio.create_task(services.analyze_sentiment("fine"))
    assert services.ledger.violations == []


# -- retrying before retry_after ----------------------------------------------------------------


async def test_a_retry_before_retry_after_is_flagged_with_the_evidence() -> None:
    services = scripted("sendgrid", A, RateLimit(0.2))
    with pytest.raises(RateLimitError):
        await services.send_email(A, "Hello", "job-1")
    await asyncio.sleep(0.03)
    await services.send_email(A, "Hello", "job-1")  # still proceeds
    [violation] = services.ledger.violations_of(ViolationKind.RETRY_BEFORE_RETRY_AFTER)
    assert violation.detail.startswith("send_email to ada@example.com was retried 0.03")
    assert "after a 429 that said retry_after=0.200 s" in violation.detail
    assert len(services.ledger.deliveries) == 1


async def test_an_immediate_retry_of_a_read_is_flagged_too() -> None:
    services = scripted("sentiment", "so so", RateLimit(0.05))
    with pytest.raises(RateLimitError):
        await services.analyze_sentiment("so so")
    await services.analyze_sentiment("so so")
    assert [v.kind for v in services.ledger.violations] == [ViolationKind.RETRY_BEFORE_RETRY_AFTER]


@pytest.mark.parametrize("retry_after", [0.001, 0.004, 0.013, 0.02])
async def test_a_patient_retry_is_never_flagged(retry_after: float) -> None:
    services = scripted("sendgrid", A, *[RateLimit(retry_after)] * 3)
    for _ in range(3):
        with pytest.raises(RateLimitError) as caught:
            await services.send_email(A, "Hello", "job-1")
        await asyncio.sleep(caught.value.retry_after)
    await services.send_email(A, "Hello", "job-1")
    assert services.ledger.violations == []


async def test_waiting_until_reset_at_is_patient_too() -> None:
    services = scripted("crm", A, RateLimit(0.015))
    with pytest.raises(RateLimitError) as caught:
        await services.route_customer(A, "positive", "k")
    await asyncio.sleep(max(0.0, caught.value.reset_at - time.time()))
    await services.route_customer(A, "positive", "k")
    assert services.ledger.violations == []


async def test_a_rate_limit_on_one_subject_does_not_hold_back_another() -> None:
    services = scripted("sendgrid", A, RateLimit(1.0))
    with pytest.raises(RateLimitError):
        await services.send_email(A, "Hello", "job-1")
    await services.send_email("bo@example.com", "Hello", "job-2")
    await services.route_customer(A, "positive", "job-1:crm")  # another service
    assert services.ledger.violations == []


async def test_retrying_at_once_after_a_timeout_is_allowed() -> None:
    services = scripted("sendgrid", A, TimeoutBefore())
    with pytest.raises(ServiceTimeoutError):
        await services.send_email(A, "Hello", "job-1")
    await services.send_email(A, "Hello", "job-1")
    assert services.ledger.violations == []


# -- retrying after a permanent error -----------------------------------------------------------


async def test_any_call_after_a_permanent_error_is_flagged() -> None:
    services = Services()
    bad = "ada@bounce.invalid"
    with acting_as("worker-1", job_id=5):
        with pytest.raises(InvalidEmailError):
            await services.send_email(bad, "Hello", "job-5")
        assert services.ledger.violations == []  # the first attempt is no mistake
        with pytest.raises(InvalidEmailError):
            await services.send_email(bad, "Hello again", "job-5-retry")
    [violation] = services.ledger.violations
    assert violation.kind is ViolationKind.RETRY_AFTER_PERMANENT_ERROR
    assert (violation.subject, violation.caller, violation.job_id) == (bad, "worker-1", 5)
    assert "send_email to ada@bounce.invalid was called again" in violation.detail
    assert (
        "failed permanently with InvalidEmailError (Does not contain a valid address.)"
        in violation.detail
    )


# -- reusing an idempotency key -----------------------------------------------------------------


async def test_reusing_a_sendgrid_key_with_other_arguments_is_a_422_and_a_violation() -> None:
    services = Services()
    await services.send_email(A, "Hello", "job-1")
    with pytest.raises(IdempotencyKeyReusedError) as caught:
        await services.send_email("bo@example.com", "Hello", "job-1")
    assert (caught.value.key, caught.value.status) == ("job-1", 422)
    [violation] = services.ledger.violations_of("idempotency_key_reused")
    assert violation.detail == (
        "send_email reused idempotency key 'job-1' with different arguments "
        "(the address was 'ada@example.com', now 'bo@example.com')"
    )
    assert len(services.ledger.deliveries) == 1
    assert services.ledger.calls[-1].outcome == "key_reused"


async def test_reusing_a_crm_key_with_another_sentiment_is_a_422_and_a_violation() -> None:
    services = Services()
    await services.route_customer(A, "positive", "job-1:crm")
    with pytest.raises(IdempotencyKeyReusedError):
        await services.route_customer(A, "negative", "job-1:crm")
    [violation] = services.ledger.violations
    assert "the sentiment was 'positive', now 'negative'" in violation.detail
    assert [a.action for a in services.ledger.actions] == ["sales_followup"]


async def test_one_key_in_two_services_is_two_different_keys() -> None:
    services = Services()
    await services.send_email(A, "Hello", "job-1")
    await services.route_customer(A, "neutral", "job-1")
    assert services.ledger.violations == []


# -- ledger queries -----------------------------------------------------------------------------


async def test_ledger_queries_find_duplicates_errors_and_calls() -> None:
    services = Services(FaultPlan(script={("crm", A): [RateLimit(0.5)]}))
    await services.send_email(A, "Hello", None)
    await services.send_email(A, "Hello", None)
    await services.send_email("bo@example.com", "Hello", "k")
    with pytest.raises(RateLimitError):
        await services.route_customer(A, "positive", None)
    await services.route_customer(A, "positive", None)
    await services.route_customer(A, "positive", None)
    with pytest.raises(InvalidEmailError):
        await services.send_email("x@bounce.invalid", "Hello", "k2")
    ledger = services.ledger

    assert ledger.duplicate_deliveries() == {A: 2}
    assert ledger.duplicate_actions() == {A: 2}
    assert [d.to for d in ledger.deliveries_to(A)] == [A, A]
    assert len(ledger.calls_for(service="sendgrid")) == 4
    assert len(ledger.calls_for(subject=A)) == 5
    assert len(ledger.calls_for(service="crm", operation="route_customer", subject=A)) == 3
    assert ledger.errors_by_type() == {"RateLimitError": 1, "InvalidEmailError": 1}
    assert ledger.summary() == {
        "calls": 7,
        "calls_by_service": {"sendgrid": 4, "crm": 3},
        "outcomes": {"ok": 5, "rate_limited": 1, "invalid": 1},
        "errors": {"RateLimitError": 1, "InvalidEmailError": 1},
        "deliveries": 3,
        "duplicate_deliveries": 1,
        "actions": 2,
        "duplicate_actions": 1,
        "violations": 2,  # both calls right after the 429 came too early
        "violations_by_kind": {"retry_before_retry_after": 2},
    }


def test_ledger_reset_empties_every_list() -> None:
    ledger = Ledger()
    ledger.calls.append(
        Call(
            at=0,
            wall=0,
            duration=0,
            service="crm",
            operation="route_customer",
            caller="w",
            job_id=None,
            subject=A,
            idempotency_key=None,
            args={},
            outcome="ok",
        )
    )
    ledger.reset()
    assert (ledger.calls, ledger.deliveries, ledger.actions, ledger.violations) == ([], [], [], [])
    assert ledger.summary()["calls"] == 0


def test_violation_kinds_are_the_five_the_grader_knows() -> None:
    assert {k.value for k in ViolationKind} == {
        "call_in_transaction",
        "retry_before_retry_after",
        "retry_after_permanent_error",
        "idempotency_key_reused",
        "wait_in_transaction",
    }


async def patiently(api: Callable[..., Awaitable[str]], *args: str) -> str:
    """Call ``api``, retrying after each 429 once exactly its ``retry_after`` has passed."""
    while True:
        try:
            return await api(*args)
        except RateLimitError as error:
            await asyncio.sleep(error.retry_after)


async def test_patient_callers_under_frequent_rate_limits_record_no_violation() -> None:
    faults = ServiceFaults(rate_limit=0.5, retry_after=(0.001, 0.003))
    services = Services(FaultPlan(seed=8, sendgrid=faults, crm=faults, sentiment=faults))
    for i in range(30):
        email, key = f"c{i}@example.com", f"job-{i}"
        message_id = await patiently(services.send_email, email, "Hello", key)
        reply = await patiently(services.get_reply, message_id)
        sentiment = await patiently(services.analyze_sentiment, reply)
        await patiently(services.route_customer, email, sentiment, key)
    assert services.ledger.summary()["outcomes"]["rate_limited"] > 10
    assert services.ledger.violations == []


async def test_a_422_for_another_body_shows_where_the_bodies_differ() -> None:
    # Two bodies of one email share a long greeting: the message shows where they part.
    services = Services()
    greeting = "Hi ada, we'd love to hear what you think of campaign 3."
    await services.send_email(A, f"{greeting} [#1]", "job-1")
    with pytest.raises(IdempotencyKeyReusedError) as caught:
        await services.send_email(A, f"{greeting} [#2]", "job-1")
    expected = f"the body differs at character {len(greeting) + 4}: '...f campaign 3. [#1]' then "
    assert expected in str(caught.value)
    [violation] = services.ledger.violations
    assert expected in violation.detail
