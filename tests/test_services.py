"""The fake APIs: real-API behaviour, every fault kind, idempotency, and seeded reproducibility."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable

import pytest

from harness import scope
from harness.exceptions import (
    HarnessError,
    InvalidEmailError,
    NoActiveServices,
    RateLimitError,
    ServiceError,
    ServiceTimeoutError,
)
from harness.scope import acting_as
from harness.world.faults import (
    FaultPlan,
    Latency,
    RateLimit,
    ScriptedOutcome,
    ServiceFaults,
    Succeed,
    TimeoutAfter,
    TimeoutBefore,
)
from harness.world.services import (
    REPLY_TEMPLATES,
    Services,
    analyze_sentiment,
    classify_sentiment,
    get_reply,
    reply_for,
    route_customer,
    send_email,
    use_services,
)

A = "ada@example.com"


def scripted(service: str, subject: str, *outcomes: ScriptedOutcome) -> Services:
    return Services(FaultPlan(script={(service, subject): list(outcomes)}))


# -- plain behaviour ----------------------------------------------------------------------------


async def test_send_email_delivers_and_returns_a_message_id() -> None:
    services = Services()
    message_id = await services.send_email(A, "Hello Ada", "job-1")
    assert isinstance(message_id, str) and len(message_id) >= 16
    [delivery] = services.ledger.deliveries
    assert (delivery.message_id, delivery.to, delivery.body, delivery.key) == (
        message_id,
        A,
        "Hello Ada",
        "job-1",
    )


async def test_the_same_key_returns_the_same_message_id_and_never_delivers_twice() -> None:
    services = Services()
    first = await services.send_email(A, "Hello", "job-1")
    again = await services.send_email(A, "Hello", "job-1")
    assert again == first
    assert len(services.ledger.deliveries) == 1
    assert [c.outcome for c in services.ledger.calls] == ["ok", "replayed"]


async def test_concurrent_sends_with_one_key_deliver_once() -> None:
    services = Services(FaultPlan(sendgrid=ServiceFaults(latency=Latency.constant(0.002))))
    ids = await asyncio.gather(*(services.send_email(A, "Hello", "job-1") for _ in range(10)))
    assert len(set(ids)) == 1
    assert len(services.ledger.deliveries) == 1


async def test_without_a_key_every_successful_send_delivers() -> None:
    services = Services()
    first = await services.send_email(A, "Hello", None)
    second = await services.send_email(A, "Hello", None)
    assert first != second
    assert services.ledger.duplicate_deliveries() == {A: 2}


async def test_message_ids_are_deterministic_from_seed_and_key() -> None:
    async def message_id(seed: int, key: str) -> str:
        return await Services(FaultPlan(seed=seed)).send_email(A, "Hello", key)

    assert await message_id(1, "k") == await message_id(1, "k")
    assert await message_id(1, "k") != await message_id(2, "k")
    assert await message_id(1, "k") != await message_id(1, "other")


async def test_get_reply_returns_the_recipients_reply_deterministically() -> None:
    services = Services(FaultPlan(seed=3))
    message_id = await services.send_email(A, "Hello", "job-1")
    reply = await services.get_reply(message_id)
    assert reply == await services.get_reply(message_id) == reply_for(3, A)
    assert A in reply  # signed: every customer's reply text is their own


async def test_get_reply_for_an_unknown_message_id_is_a_404() -> None:
    services = Services()
    with pytest.raises(ServiceError) as caught:
        await services.get_reply("no-such-id")
    assert caught.value.status == 404 and not caught.value.transient
    assert services.ledger.calls[-1].outcome == "not_found"


async def test_route_customer_applies_the_action_for_the_sentiment_once_per_key() -> None:
    services = Services()
    first = await services.route_customer(A, "negative", "job-1:crm")
    assert await services.route_customer(A, "negative", "job-1:crm") == first
    assert first.startswith("act_")
    [action] = services.ledger.actions
    assert (action.email, action.sentiment, action.action) == (A, "negative", "retention_offer")
    await services.route_customer("bo@example.com", "positive", "job-2:crm")
    await services.route_customer("cy@example.com", "neutral", "job-3:crm")
    assert [a.action for a in services.ledger.actions] == [
        "retention_offer",
        "sales_followup",
        "nurture",
    ]


async def test_route_customer_rejects_an_unknown_sentiment_with_a_400() -> None:
    services = Services()
    with pytest.raises(ServiceError, match="sentiment must be one of") as caught:
        await services.route_customer(A, "ecstatic", "job-1:crm")
    assert caught.value.status == 400
    assert services.ledger.actions == []


# -- sentiment ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sentiment", "template"),
    [(s, t) for s, templates in REPLY_TEMPLATES.items() for t in templates],
)
async def test_every_reply_template_classifies_to_its_intended_sentiment(
    sentiment: str, template: str
) -> None:
    assert await Services().analyze_sentiment(template) == sentiment


async def test_replies_classify_to_their_template_whatever_the_signature_says() -> None:
    services = Services()
    for i in range(200):
        recipient = random.Random(i).choice(["happy.love", "stop.hate", "x"]) + f"{i}@example.com"
        reply = reply_for(11, recipient)
        [intended] = [
            s
            for s, templates in REPLY_TEMPLATES.items()
            if any(reply.startswith(t) for t in templates)
        ]
        assert await services.analyze_sentiment(reply) == intended


def test_sentiment_handles_negation() -> None:
    assert classify_sentiment("Not interested, sorry.") == "negative"
    assert classify_sentiment("I am not happy with this.") == "negative"
    assert classify_sentiment("Love it, great work!") == "positive"


def test_sentiment_of_unknown_words_is_a_stable_hash() -> None:
    texts = [f"zyx {i} qwv" for i in range(60)]
    answers = [classify_sentiment(t) for t in texts]
    assert answers == [classify_sentiment(t) for t in texts]
    assert set(answers) == {"positive", "negative", "neutral"}


def test_replies_cover_every_sentiment_across_customers() -> None:
    replies = [reply_for(0, f"c{i}@example.com") for i in range(100)]
    assert {classify_sentiment(r) for r in replies} == {"positive", "negative", "neutral"}
    assert replies == [reply_for(0, f"c{i}@example.com") for i in range(100)]
    assert replies != [reply_for(1, f"c{i}@example.com") for i in range(100)]


# -- invalid addresses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "plainaddress",
        "@example.com",
        "ada@",
        "ada@example",
        "ada example@example.com",
        "ada..b@example.com",
        ".ada@example.com",
        "ada.@example.com",
        "ada@@example.com",
        "ada@exa mple.com",
        "ada@-example.com",
        "ada@example..com",
        "ada@example.c0m",
        "ada@bounce.invalid",
        "ADA@Mail.Bounce.INVALID",
        "ada@invalid",
        "",
        "a" * 65 + "@example.com",
    ],
)
async def test_invalid_addresses_are_always_a_permanent_invalid_email_error(address: str) -> None:
    # Even a plan that rate limits every call cannot hide a bad address behind a transient error.
    services = Services(FaultPlan(sendgrid=ServiceFaults(rate_limit=1.0, retry_after=(0, 0))))
    for _ in range(2):
        with pytest.raises(InvalidEmailError) as caught:
            await services.send_email(address, "Hello", f"key-{address}")
        error = caught.value
        assert (error.email, error.status, error.transient) == (address, 400, False)
        assert error.reason == "Does not contain a valid address."
        assert error.field == "personalizations.0.to.0.email"
    assert services.ledger.deliveries == []
    assert [c.outcome for c in services.ledger.calls] == ["invalid", "invalid"]


@pytest.mark.parametrize(
    "address",
    [
        "ada@example.com",
        "ada.lovelace+news@mail.example.co.uk",
        "o'brien@example.ie",
        "x_y-z@sub-domain.example.org",
        "UPPER@EXAMPLE.COM",
    ],
)
async def test_valid_addresses_are_delivered(address: str) -> None:
    services = Services()
    await services.send_email(address, "Hello", "k")
    assert len(services.ledger.deliveries_to(address)) == 1


async def test_the_invalid_email_message_says_why_the_address_is_invalid() -> None:
    services = Services()
    with pytest.raises(InvalidEmailError, match=r"reserved top-level domain \.invalid"):
        await services.send_email("ada@bounce.invalid", "Hello", "k1")
    with pytest.raises(InvalidEmailError, match="no spaces"):
        await services.send_email("ada lovelace@example.com", "Hello", "k2")


# -- faults -------------------------------------------------------------------------------------


async def test_a_rate_limit_carries_retry_after_and_reset_at_and_delivers_nothing() -> None:
    services = scripted("sendgrid", A, RateLimit(0.25))
    before = time.time()
    with pytest.raises(RateLimitError) as caught:
        await services.send_email(A, "Hello", "job-1")
    error = caught.value
    assert error.retry_after == 0.25 and error.status == 429 and error.transient
    assert error.service == "sendgrid"
    assert before + 0.25 <= error.reset_at <= time.time() + 0.25
    assert services.ledger.deliveries == []
    assert services.ledger.calls[-1].outcome == "rate_limited"


async def test_timeout_before_raises_a_timeout_error_and_does_not_deliver() -> None:
    services = scripted("sendgrid", A, TimeoutBefore())
    started = asyncio.get_running_loop().time()
    with pytest.raises(TimeoutError) as caught:  # also a ServiceTimeoutError
        await services.send_email(A, "Hello", "job-1")
    assert isinstance(caught.value, ServiceTimeoutError) and caught.value.transient
    assert asyncio.get_running_loop().time() - started >= 0.02 * 0.9  # the client did wait
    assert services.ledger.deliveries == []
    assert services.ledger.calls[-1].outcome == "timeout_before"


async def test_timeout_after_delivers_once_and_a_retry_with_the_key_returns_the_same_id() -> None:
    services = scripted("sendgrid", A, TimeoutAfter())
    with pytest.raises(ServiceTimeoutError):
        await services.send_email(A, "Hello", "job-1")
    [delivery] = services.ledger.deliveries  # the effect happened; only the response was lost
    assert await services.send_email(A, "Hello", "job-1") == delivery.message_id
    assert len(services.ledger.deliveries) == 1
    assert [c.outcome for c in services.ledger.calls] == ["timeout_after", "replayed"]


async def test_both_timeout_kinds_look_identical_to_the_client() -> None:
    before = scripted("sendgrid", A, TimeoutBefore())
    after = scripted("sendgrid", A, TimeoutAfter())
    messages = []
    for services in (before, after):
        with pytest.raises(ServiceTimeoutError) as caught:
            await services.send_email(A, "Hello", "job-1")
        messages.append(str(caught.value))
    assert messages[0] == messages[1]


async def test_crm_timeout_after_applies_the_action_once_and_replays_it() -> None:
    services = scripted("crm", A, TimeoutAfter(), TimeoutAfter())
    for _ in range(2):
        with pytest.raises(ServiceTimeoutError):
            await services.route_customer(A, "positive", "job-1:crm")
    action_id = await services.route_customer(A, "positive", "job-1:crm")
    assert [a.action_id for a in services.ledger.actions] == [action_id]


async def test_faults_apply_to_idempotent_replays_too() -> None:
    services = scripted("sendgrid", A, Succeed(), RateLimit(0.0))
    await services.send_email(A, "Hello", "job-1")
    with pytest.raises(RateLimitError):
        await services.send_email(A, "Hello", "job-1")


async def test_faults_apply_to_reads() -> None:
    text = "Love it"
    services = scripted("sentiment", text, TimeoutBefore(), RateLimit(0.0), Succeed())
    with pytest.raises(ServiceTimeoutError):
        await services.analyze_sentiment(text)
    with pytest.raises(RateLimitError):
        await services.analyze_sentiment(text)
    assert await services.analyze_sentiment(text) == "positive"


async def test_calls_take_their_sampled_latency() -> None:
    services = Services(FaultPlan(crm=ServiceFaults(latency=Latency.constant(0.01))))
    started = asyncio.get_running_loop().time()
    await services.route_customer(A, "neutral", "k")
    assert asyncio.get_running_loop().time() - started >= 0.009
    assert services.ledger.calls[-1].duration >= 0.009


# -- the ledger's record of calls ---------------------------------------------------------------


async def test_every_call_is_recorded_with_who_made_it_and_how_it_ended() -> None:
    services = scripted("sendgrid", A, RateLimit(0.0))
    with acting_as("worker-7", job_id=12):
        with pytest.raises(RateLimitError):
            await services.send_email(A, "Hello", "job-12")
        message_id = await services.send_email(A, "Hello", "job-12")
    rate_limited, ok = services.ledger.calls
    assert (rate_limited.caller, rate_limited.job_id, rate_limited.outcome) == (
        "worker-7",
        12,
        "rate_limited",
    )
    assert (rate_limited.result, rate_limited.error) == (None, "RateLimitError")
    assert (ok.service, ok.operation, ok.subject, ok.idempotency_key) == (
        "sendgrid",
        "send_email",
        A,
        "job-12",
    )
    assert ok.args == {"to": A, "body": "Hello"}
    assert (ok.outcome, ok.result, ok.error, ok.in_transaction) == ("ok", message_id, None, False)
    assert ok.at >= rate_limited.at and ok.wall > 0 and ok.duration >= 0
    assert services.ledger.deliveries[0].caller == "worker-7"


async def test_a_call_without_a_worker_is_attributed_to_its_task() -> None:
    services = Services()
    await asyncio.create_task(services.analyze_sentiment("fine"), name="dashboard-probe")
    assert services.ledger.calls[-1].caller == "dashboard-probe"


async def test_reset_forgets_deliveries_keys_and_calls() -> None:
    services = Services()
    await services.send_email(A, "Hello", "job-1")
    services.reset()
    assert services.ledger.calls == [] and services.ledger.deliveries == []
    await services.send_email(A, "Hello", "job-1")
    assert [c.outcome for c in services.ledger.calls] == ["ok"]


# -- the candidate-facing functions -------------------------------------------------------------


async def test_module_functions_delegate_to_the_active_services() -> None:
    services = Services(FaultPlan(seed=4))
    with use_services(services):
        message_id = await send_email(A, "Hello", "job-1")
        reply = await get_reply(message_id)
        sentiment = await analyze_sentiment(reply)
        action_id = await route_customer(A, sentiment, "job-1:crm")
    assert [c.operation for c in services.ledger.calls] == [
        "send_email",
        "get_reply",
        "analyze_sentiment",
        "route_customer",
    ]
    assert services.ledger.actions[0].action_id == action_id
    assert scope.current().services is None


async def test_calling_an_api_with_no_active_services_says_how_to_fix_it() -> None:
    with pytest.raises(NoActiveServices, match="use_services") as caught:
        await send_email(A, "Hello", "job-1")
    assert isinstance(caught.value, HarnessError)


# -- reproducibility ----------------------------------------------------------------------------


# Every fault kind, but no waiting: even a 0.1 ms sleep costs a full 1 ms epoll tick.
def fast_chaos(seed: int) -> FaultPlan:
    return FaultPlan.chaos(
        seed, rate=0.2, latency=Latency.none(), retry_after=(0.0, 0.0), timeout_seconds=0.0
    )


async def until_it_answers(api: Callable[..., Awaitable[str]], *args: str) -> str:
    """Retry transient errors at once (this plan's retry_after is 0)."""
    for _ in range(20):
        try:
            return await api(*args)
        except (RateLimitError, ServiceTimeoutError):
            continue
    raise AssertionError(f"{api.__name__}{args} never succeeded")


async def run_workflow(services: Services, email: str, job_id: int) -> None:
    """One job's workflow, each step tried until it succeeds or fails for good."""
    key = f"job-{job_id}"
    with acting_as(f"w{job_id % 4}", job_id):
        try:
            message_id = await until_it_answers(services.send_email, email, "Hi", key)
        except InvalidEmailError:
            return
        reply = await until_it_answers(services.get_reply, message_id)
        sentiment = await until_it_answers(services.analyze_sentiment, reply)
        await until_it_answers(services.route_customer, email, sentiment, key)


def customers(n: int) -> list[str]:
    emails = [f"customer{i}@example.com" for i in range(n)]
    emails[7] = "broken@bounce.invalid"
    emails[50] = "no spaces@example.com"
    return emails


def fingerprint(services: Services) -> list[tuple[str, str, str, str | None]]:
    return [(c.service, c.subject, c.outcome, c.result) for c in services.ledger.calls]


async def sequential_run(seed: int) -> Services:
    services = Services(fast_chaos(seed))
    for job_id, email in enumerate(customers(200)):
        await run_workflow(services, email, job_id)
    return services


async def test_the_same_seed_gives_the_same_ledger_and_another_seed_differs() -> None:
    first, second, other = await sequential_run(1), await sequential_run(1), await sequential_run(2)
    assert fingerprint(first) == fingerprint(second)
    assert fingerprint(first) != fingerprint(other)
    outcomes = {c.outcome for c in first.ledger.calls}
    assert outcomes >= {
        "ok",
        "replayed",
        "rate_limited",
        "timeout_before",
        "timeout_after",
        "invalid",
    }
    assert first.ledger.duplicate_deliveries() == {}
    assert len(first.ledger.actions) == 198


async def test_each_subjects_faults_do_not_depend_on_how_tasks_interleave() -> None:
    sequential = await sequential_run(3)
    concurrent = Services(fast_chaos(3))
    await asyncio.gather(
        *(run_workflow(concurrent, email, job_id) for job_id, email in enumerate(customers(200)))
    )

    def per_subject(services: Services) -> dict[tuple[str, str], list[tuple[str, str | None]]]:
        calls: dict[tuple[str, str], list[tuple[str, str | None]]] = {}
        for c in services.ledger.calls:
            calls.setdefault((c.service, c.subject), []).append((c.outcome, c.result))
        return calls

    assert fingerprint(concurrent) != fingerprint(sequential)  # the order did change...
    assert per_subject(concurrent) == per_subject(sequential)  # ...each subject's story did not
