"""The drill board at the size of the terminal it is drawn in: ``render(snapshot, width=,
height=)`` is the whole board when it fits, else the compact one, which must fit 80x24 whole
(rich's ``Live`` crops a taller board at the screen's bottom) and still show every figure.

Rendered into a capture console, as the live board is drawn: no run, no database.
"""

from __future__ import annotations

import dataclasses
import io
import re

import pytest
from rich.console import Console

from harness.sql.pool import PoolStats
from scenarios.compact import LEGEND
from scenarios.dashboard import render
from scenarios.snapshot import STATES, JobCrashes, Snapshot, WorkerView

WIDTH, HEIGHT = 80, 24
COMPACT_TITLES = (
    "Queue (1,200 jobs in the db)",
    "Latency (claim; each step)",
    "Workers (20): now (avg)",
    "Throughput (jobs done or failed)",
    "Pool & txns: 8,888 round trips",
    "External APIs (ledger) & emails",
)


def snapshot(**changes: object) -> Snapshot:
    """A run mid-way with something in every figure, each a distinct number."""
    views = [
        WorkerView(f"worker-{i}", state, "UPDATE 1.4s" if state == STATES[0] else "", 1.4)
        for i, state in enumerate([STATES[0]] * 7 + [STATES[1]] * 9 + list(STATES[2:]) * 1)
    ]
    s = Snapshot(
        scenario=3,
        title="PoolTimeout errors and p99 spikes under the launch burst",
        variant="production code",
        database="PostgreSQL 127.0.0.1:5432/kata",
        elapsed=2.5,
        duration=3.0,
        finished=False,
        workers=20,
        jobs=1200,
        lease=2.0,
        heartbeat=True,
        counts={"pending": 701, "running": 17, "completed": 455, "failed": 27},
        throughput_now=1234,
        throughput_avg=1111,
        series=[float(i % 7) * 100 for i in range(40)] + [2345.0],
        api_seconds_per_job=0.475,
        capacity=2526,
        latency={
            "claim": {"n": 500, "p50": 0.046, "p95": 2.05, "p99": 2.08},
            "send_email": {"n": 480, "p50": 1.31, "p95": 2.19, "p99": 2.21},
            "analyze": {"n": 470, "p50": 0.213, "p95": 0.892, "p99": 1.14},
            "take_action": {"n": 460, "p50": 0.047, "p95": 0.151, "p99": 0.252},
            "all steps": {"n": 1410, "p50": 0.128, "p95": 0.625, "p99": 1.16},
        },
        worker_views=views,
        states={STATES[0]: 7, STATES[1]: 9, STATES[2]: 1, STATES[3]: 1, STATES[4]: 1, STATES[5]: 1},
        states_avg={state: 0.1 + i for i, state in enumerate(STATES)},
        pool=PoolStats(
            max_size=10,
            size=10,
            in_use=9,
            waiting=11,
            acquisitions=1000,
            timeouts=30,
            total_wait=386.0,
            max_wait=1.07,
        ),
        pool_saturated_share=0.91,
        pool_peak_waiting=28,
        transactions_open=3,
        oldest_transaction=2.04,
        oldest_transaction_max=2.61,
        round_trips=8888,
        api_calls={
            "send_email": 481,
            "get_reply": 472,
            "analyze_sentiment": 463,
            "route_customer": 454,
        },
        api_errors={"CancelledError": 4},
        api_in_flight=5,
        calls_in_transaction=66,
        delivered=477,
        duplicate_copies=12,
        duplicated_recipients=8,
        recoveries=42,
        worker_errors={"OperationalError": 19, "PoolTimeout": 21},
        harness_errors={"PoolTimeout": 9},
    )
    return dataclasses.replace(s, **changes)  # type: ignore[arg-type]


def draw(s: Snapshot, width: int = WIDTH, height: int | None = HEIGHT) -> list[str]:
    console = Console(
        width=width, height=height or 200, record=True, file=io.StringIO(), color_system=None
    )
    console.print(render(s, width=width, height=height))
    return [line.rstrip() for line in console.export_text().splitlines()]


def assert_whole(lines: list[str], width: int = WIDTH) -> None:
    """No line wider than the screen; every box on a line closed on it; no text cut short."""
    for line in lines:
        assert len(line) <= width, f"wider than the screen ({len(line)}):\n{line}"
        assert line.count("╭") == line.count("╮"), f"a box's top edge cut:\n{line}"
        assert line.count("├") == line.count("┤"), f"a section's title line cut:\n{line}"
        assert line.count("╰") == line.count("╯"), f"a box's bottom edge cut:\n{line}"
        if line.lstrip().startswith(("│", "╰", "├")):
            assert line.endswith(("│", "╯", "┤")), f"a box's line overflows:\n{line}"
            assert line.count("│") % 2 == 0, f"a box's line overflows:\n{line}"
        assert "…" not in line, f"cut short:\n{line}"


def test_the_live_board_at_80x24_is_the_compact_one_and_fits_whole() -> None:
    lines = draw(snapshot())
    assert len(lines) <= HEIGHT, "\n".join(lines)
    assert_whole(lines)
    text = "\n".join(lines)
    assert lines[0].startswith(" INCIDENT 3  PoolTimeout errors and p99 spikes")
    for title in COMPACT_TITLES:
        assert f"─ {title} ─" in text, f"{title!r} missing or cut:\n{text}"
    assert lines[-1] == LEGEND


def test_the_compact_board_shows_every_figure_of_the_full_one() -> None:
    s = snapshot()
    text = "\n".join(draw(s))
    rows = {
        "queue": [r"pending\s+701 ", r"running\s+17 ", r"completed\s+455 ", r"failed\s+27 "],
        "throughput": [
            r"average\s+1,111/min · 44% of capacity",
            r"capacity 2,526/min = 20 ÷ 475ms",
            r"[▁-█]+ last 5s 1,234 · peak 2,345",
        ],
        "latency": [
            r"claim\s+46ms\s+2\.05s\s+2\.08s",
            r"send_email step\s+1\.31s\s+2\.19s\s+2\.21s",
            r"analyze step\s+213ms\s+892ms\s+1\.14s",
            r"take_action step\s+47ms\s+151ms\s+252ms",
            r"all steps\s+128ms\s+625ms\s+1\.16s",
        ],
        "workers": [
            r"L lock\s+7 \(0\.1\)",
            r"A API\s+9 \(1\.1\)",
            r"C claim\s+1 \(2\.1\)",
            r"P work\s+1 \(3\.1\)",
            r"· idle\s+1 \(4\.1\)",
            r"x stop\s+1 \(5\.1\)",
            r"LLLLLLLAAAAAAAAAC",
            r"longest 1\.4s: worker-0 in UPDATE",
            r"lease 2s, heartbeat on",
            r"42 jobs handed to a second worker",
        ],
        "pool": [
            r"in use\s+9/10 \S+ full 91%",
            r"waiting\s+11 now · peak 28 of 40",
            r"wait\s+mean 386ms · max 1\.07s",
            r"timeouts 30 = 21 raised \+ 9 retried",
            r"txn\s+3 open · oldest 2\.04s",
            r"\(max 2\.61s\)",
        ],
        "apis": [
            r"calls\s+send 481 · reply 472",
            r"sentiment 463 · crm 454",
            r"5 in flight · 66 in a txn",
            r"errors\s+stopped mid-call 4\s+│",
            r"emails\s+477 delivered",
            r"12 duplicate copies to 8",
            r"raised\s+OperationalError 19\s+│",
            r"│\s+PoolTimeout 21\s+│",
        ],
    }
    for panel, figures in rows.items():
        for figure in figures:
            assert re.search(figure, text), f"{panel}: {figure!r} missing:\n{text}"


def test_many_kinds_of_error_at_once_squeeze_the_board_not_cut_it() -> None:
    s = snapshot(
        api_errors={"CancelledError": 4, "RateLimitError": 6, "ServiceTimeoutError": 3},
        worker_errors={"OperationalError": 19, "PoolTimeout": 21, "RateLimitError": 2},
        harness_errors={"PoolTimeout": 9, "OperationalError": 1},
        pool=dataclasses.replace(snapshot().pool, timeouts=33),  # 3 caught in the code
    )
    lines = draw(s)
    assert len(lines) <= HEIGHT, "\n".join(lines)
    assert_whole(lines)
    text = "\n".join(lines)
    assert LEGEND not in lines
    for figure in (
        r"API errors\s+stopped mid-call 4 · RateLimitError 6 · ServiceTimeoutError 3",
        r"raised\s+OperationalError 19 · PoolTimeout 21 · RateLimitError 2",
        r"retried\s+OperationalError 1",
        r"33 = 21 raised \+ 9 retried\s+│\n.*│\s+\+ 3 caught",
        r"─ Latency: p50 p95 p99 ─",
    ):
        assert re.search(figure, text), f"{figure!r} missing:\n{text}"


@pytest.mark.parametrize(("width", "height"), [(80, 60), (140, 40), (200, 40)])
def test_a_terminal_tall_enough_gets_the_whole_board(width: int, height: int) -> None:
    lines = draw(snapshot(), width, height)
    assert len(lines) <= height
    assert_whole(lines, width)
    assert not any(line.startswith("├") for line in lines)  # the full board's own boxes
    assert "worker errors" in "\n".join(lines)


@pytest.mark.parametrize("width", [80, 100, 140])
def test_a_short_terminal_of_any_width_gets_the_compact_board_whole(width: int) -> None:
    lines = draw(snapshot(), width, HEIGHT)
    assert len(lines) <= HEIGHT
    assert_whole(lines, width)
    assert "Workers (20): now (avg)" in "\n".join(lines)


def test_without_a_height_the_board_is_the_whole_one_at_any_length() -> None:
    lines = draw(snapshot(), WIDTH, None)
    assert len(lines) > HEIGHT  # printed, not live: it scrolls
    assert_whole(lines)


def test_an_api_error_keeps_its_count_on_its_line_in_a_narrow_panel() -> None:
    lines = draw(snapshot(api_errors={"CancelledError": 123, "RateLimitError": 6}), WIDTH, None)
    assert any(re.search(r"│ API errors\s+stopped mid-call 123\s+│", line) for line in lines)
    assert any(re.search(r"│\s+RateLimitError 6\s+│", line) for line in lines), lines


def crash_loop(**changes: object) -> Snapshot:
    """Drill 4 mid-way: workers dying, all on one job, most of them down and restarting."""
    views = [WorkerView(f"worker-{i}", "stopped", "restarting (back-off 10 s)") for i in range(14)]
    views += [WorkerView(f"worker-{i}", "in an API call", "send_email") for i in range(14, 20)]
    s = snapshot(
        scenario=4,
        title="Workers keep dying, throughput falls in waves",
        lease=0.5,
        worker_views=views,
        states={**dict.fromkeys(STATES, 0), "in an API call": 6, "stopped": 14},
        worker_errors={},
        harness_errors={},
        api_errors={},
        calls_in_transaction=0,
        pool=dataclasses.replace(snapshot().pool, timeouts=0),
        crashes=23,
        most_crashed=JobCrashes(job_id=4, crashes=23, recoveries=22),
        recoveries=22,
    )
    return dataclasses.replace(s, **changes)  # type: ignore[arg-type]


def test_drill_4s_board_at_80x24_says_who_died_and_on_which_job() -> None:
    lines = draw(crash_loop())
    assert len(lines) <= HEIGHT, "\n".join(lines)
    assert_whole(lines)
    text = "\n".join(lines)
    assert lines[0].startswith(" INCIDENT 4  Workers keep dying")
    assert lines[-1] == LEGEND  # no squeeze needed: its workers wait on no lock
    for figure in (
        r"x stop\s+14 \(5\.1\)",
        r"x{14}A{6}",
        r"lease 0\.5s, heartbeat on",
        r"22 jobs handed to a second worker",
        r"23 died, all running job 4\s+│",
    ):
        assert re.search(figure, text), f"{figure!r} missing:\n{text}"
    cured = "\n".join(
        draw(crash_loop(crashes=5, most_crashed=JobCrashes(4, 5, 4, given_up=True), given_up=1))
    )
    assert re.search(r"5 died, all running job 4 \(failed\)\s+│", cured), cured
    whole = "\n".join(draw(crash_loop(), 140, 60))
    assert re.search(r"crashes\s+23 workers died mid-job, all running job 4; it went", whole)


def test_drill_4s_board_with_a_lock_wait_too_still_fits_80x24() -> None:
    views = [WorkerView("worker-0", STATES[0], "UPDATE 1.4s", 1.4), *crash_loop().worker_views[1:]]
    lines = draw(crash_loop(worker_views=views))
    assert len(lines) <= HEIGHT, "\n".join(lines)
    assert_whole(lines)
    text = "\n".join(lines)
    assert "23 died, all running job 4" in text and "longest 1.4s: worker-0" in text
