"""Task G, the shared send rate, as a whole: SendGrid's account is one bucket for every process,
the limiter's tables start each test as the harness set them up, a stub or a file without the
limiter is "not started" and fails no run, and the contract, the hints, the catalogue and
``harness solution G`` have it.

That the correct solutions pass G and every G entry fails G with its diagnosis is
``test_grader_selftest``'s (every task of each correct solution, each entry in turn)."""

from __future__ import annotations

import math
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor

import pytest

from conftest import BACKENDS, base_config
from harness.cli.hints import LEVELS, hint
from harness.cli.sources import reference_section
from harness.devtools.selftest import catalogue
from harness.exceptions import RateLimitError
from harness.grading import send_judge
from harness.grading.send_drain import IDLE, set_up_account
from harness.paths import PROJECT_ROOT
from harness.sql.database import Database
from harness.sql.reuse import ReusedSpace
from harness.worker.solutions import REFERENCE_PATH
from harness.world.account import BURST, SEND_RATE_PER_SECOND, SendAccount
from harness.world.faults import FaultPlan
from harness.world.services import Services, use_services

CONTRACT = (PROJECT_ROOT / "CONTRACT.md").read_text()

#: A solution that defines A to D (the reference's) and no limiter at all.


# --- SendGrid's account ------------------------------------------------------------------------


def test_a_fresh_account_lets_a_burst_through_then_answers_429_until_it_has_refilled() -> None:
    account = SendAccount(workers=20)
    now = time.time()
    account.reset(workers=20, at=now)
    assert [account.take(now) for _ in range(BURST + 1)] == [None] * (BURST + 1)
    retry_after = account.take(now)
    assert retry_after is not None
    # The 429 says when the bucket holds a burst and one more, to the millisecond.
    assert retry_after == pytest.approx((BURST + 1) / SEND_RATE_PER_SECOND, abs=0.001)
    assert account.take(now + retry_after) is None
    assert (account.accepted, account.refused) == (BURST + 2, 1)
    account.close()
    assert not os.path.exists(account.path)


def test_the_bucket_holds_a_token_per_worker_and_no_more() -> None:
    """Room for every worker's send arriving late (``world.account``), never a second's worth."""
    account = SendAccount(workers=5)
    now = time.time()
    account.reset(workers=5, at=now - 60)  # a quiet minute fills the bucket to its brim
    taken = 0
    while account.take(now) is None:
        taken += 1
    assert taken == 5 + BURST + 2
    account.close()


def _take_many(account: SendAccount, count: int) -> int:
    return sum(account.take(time.time()) is None for _ in range(count))


def test_the_account_is_one_bucket_for_every_process() -> None:
    """Two processes spend one bucket at the same moment: what they are let through adds up to
    what it held, exactly (a lost update would let more through)."""
    account = SendAccount(rate=1e-9, workers=2000)  # no refill to speak of during the test
    now, tokens = time.time(), 500
    account.reset(workers=2000, at=now)
    # "Spent until" a moment long past: the bucket holds that many tokens more than a fresh one.
    account.spent_until(now - (tokens - BURST - 1) / account.rate, now=now)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(2, mp_context=context) as pool:
        let_through = list(pool.map(_take_many, [account, account], [400, 400]))
    assert sum(let_through) == tokens
    assert all(count > 0 for count in let_through)
    assert (account.accepted, account.refused) == (tokens, 800 - tokens)
    account.close()


async def test_sendgrid_with_an_account_answers_429_once_its_bucket_is_empty() -> None:
    account = SendAccount(workers=0)
    account.reset(workers=0, at=time.time())
    with use_services(Services(FaultPlan.none(), account=account)) as services:
        sent = [await services.send_email(f"c{i}@example.com", "hi", f"k{i}") for i in range(3)]
        with pytest.raises(RateLimitError) as refused:
            await services.send_email("c9@example.com", "hi", "k9")
    assert len(set(sent)) == 3
    assert 0 < refused.value.retry_after <= (BURST + 1) / SEND_RATE_PER_SECOND + 0.001
    assert [call.outcome for call in services.ledger.calls] == ["ok"] * 3 + ["rate_limited"]
    account.close()
    # Without an account (every task but G), SendGrid has no rate limit of its own.
    free = Services(FaultPlan.none())
    for i in range(50):
        await free.send_email(f"d{i}@example.com", "hi", f"d{i}")


# --- the limiter's tables ----------------------------------------------------------------------


async def _state(database: Database) -> tuple[dict[str, float], list[int]]:
    (row,) = (await database.run("SELECT * FROM send_rate")).rows
    slots = [r["slot"] for r in (await database.run("SELECT slot FROM send_slots")).rows]
    return row, sorted(slots)


async def test_a_busy_account_says_the_same_free_moment_in_every_column(
    database: Database,
) -> None:
    account = SendAccount(workers=3)
    start = await set_up_account(database, account, workers=3, booked=5)
    row, slots = await _state(database)
    assert row["next_send_at"] == start.free_at
    ready = row["refilled_at"] + (1 - row["tokens"]) / SEND_RATE_PER_SECOND
    assert ready == pytest.approx(start.free_at, abs=1e-6)
    assert slots == list(range(slots[0], slots[0] + 5))
    assert (slots[-1] + 1) / SEND_RATE_PER_SECOND == pytest.approx(start.free_at)
    assert slots[0] == math.ceil(start.at * SEND_RATE_PER_SECOND)
    # SendGrid's own bucket fills again then: a burst and one more (a margin) at that moment.
    assert account.take(start.free_at - (BURST + 0.5) / SEND_RATE_PER_SECOND) is not None
    assert [account.take(start.free_at) for _ in range(BURST + 1)] == [None] * (BURST + 1)
    account.close()


async def test_a_quiet_account_has_been_idle_for_a_second(database: Database) -> None:
    account = SendAccount(workers=3)
    start = await set_up_account(database, account, workers=3)
    row, slots = await _state(database)
    assert slots == [] and row["paused_until"] == 0 and row["version"] == 0
    assert row["refilled_at"] == row["next_send_at"] == pytest.approx(start.at - IDLE)
    account.close()


@pytest.mark.parametrize("backend", BACKENDS)
async def test_the_limiters_tables_start_each_test_empty(backend: str) -> None:
    space = ReusedSpace(base_config(backend), purpose="test")
    try:
        async with space.database() as database:
            await database.run("INSERT INTO send_rate (id, tokens) VALUES (1, 7)")
            await database.run("INSERT INTO send_slots (slot, worker_id) VALUES (5, 'w')")
        async with space.database() as database:
            for table in ("send_rate", "send_slots"):
                (row,) = (await database.run(f"SELECT count(*) AS n FROM {table}")).rows
                assert row["n"] == 0, table
    finally:
        await space.close()


# --- the judge ---------------------------------------------------------------------------------


def test_a_reservation_that_comes_back_late_is_never_early() -> None:
    """The bound a loaded machine cannot cross: lateness only ever moves a reservation later."""
    interval = 1 / SEND_RATE_PER_SECOND
    on_time = [0.0, 0.0, interval, 2 * interval, 3 * interval]
    assert send_judge.too_early(on_time, 0.0) is None
    bunched_late = [0.5] * 5  # a stalled loop let five go together, well after their turns
    assert send_judge.too_early(bunched_late, 0.0) is None
    k, at, early = send_judge.too_early([0.0, 0.0, 0.0], 0.0) or (0, 0.0, 0.0)
    assert (k, at) == (3, 0.0) and early == pytest.approx(interval)


# --- a limiter not written ---------------------------------------------------------------------


# --- the documents -----------------------------------------------------------------------------


def _plain(text: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"[*`]", "", text)).lower()


def test_the_contract_states_the_numbers_g_is_graded_by() -> None:
    section = _plain(CONTRACT[CONTRACT.index("### G. `reserve_send_slot(") :])
    assert f"at most {BURST} sends at once" in section
    assert f"max(0, k - {BURST}) / send_rate_per_second" in section
    assert f"at most {send_judge.REFUSALS_ALLOWED} (a limiter" in section
    assert f"at most {send_judge.MAX_STATEMENTS} statements" in section
    assert f"waits more than {send_judge.LONGEST_WAIT:g} s" in section
    assert f"reaches {send_judge.THROUGHPUT:.0%} of send_rate_per_second" in section
    assert f"its first {send_judge.BULK:.0%} of sends" in section
    assert send_judge.FIRST_ANSWER_THROUGHPUT == 0.5 and "first answer, half of it" in section
    assert f"({SEND_RATE_PER_SECOND!r})" in _plain(
        CONTRACT[CONTRACT.index("`SEND_RATE_PER_SECOND` |") :][:200]
    )


def test_the_catalogue_has_at_least_eight_mistakes_of_the_limiter() -> None:
    entries = [entry for entry in catalogue() if entry.task == "G"]
    assert len(entries) >= 8
    for entry in entries:
        assert entry.name.startswith("g_"), entry.name
        assert entry.summary, f"{entry.name} does not say what its mistake is"


def test_harness_solution_g_shows_the_reference_limiter_alone() -> None:
    section = reference_section(REFERENCE_PATH.read_text(), "G")
    assert "async def reserve_send_slot(" in section
    assert "def recover_stalled_jobs" not in section and "def claim_next_job" not in section


def test_the_limiter_has_every_level_of_hint() -> None:
    texts = [hint("G", level).text for level in range(1, LEVELS + 1)]
    assert len(set(texts)) == LEVELS
    assert "reserve_send_slot" in texts[-1]
