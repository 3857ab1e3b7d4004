"""Watch mode grades the fast tier as several shares forked at once from the warm server: the
server runs them side by side, and the shares add up to the verdicts of one run."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import BACKENDS, POSTGRES_URL, graded_json
from harness.cli.forkserver import ForkServer
from harness.cli.grading_process import GradeRequest, run_grading
from harness.cli.pipeline import FAST_SHARDS, grade_pipeline
from harness.cli.results import GradeRun
from harness.cli.shards import AnyRun, ShardedRun
from harness.cli.sources import PRISTINE_PATH, function_span, reference_section
from harness.devtools.selftest import CATALOGUE_DIR
from harness.grading.shares import durations, share
from harness.paths import PROJECT_ROOT
from harness.worker.solutions import REFERENCE_PATH

#: The database of each backend, as a GradeRequest and as pytest's --db take it.
DATABASES = {"sqlite": (None, "sqlite"), "postgresql": (POSTGRES_URL, POSTGRES_URL)}
STUB = PRISTINE_PATH.read_text()
REFERENCE = REFERENCE_PATH.read_text()


def with_claim(body: str) -> str:
    span = function_span(STUB, "claim_next_job")
    assert span is not None
    lines = STUB.splitlines(keepends=True)
    return "".join(lines[: span[0]]) + body + "".join(lines[span[1] :])


def write(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / name
    path.write_text(source)
    return path


def solved_a() -> str:
    return with_claim(reference_section(REFERENCE, "A"))


def newest_first() -> str:
    return solved_a().replace("ORDER BY id", "ORDER BY id DESC")


def counts(run: AnyRun) -> dict[str, tuple[int, int, str]]:
    return {
        task: (tally.passed, tally.failed, tally.status) for task, tally in run.tallies().items()
    }


async def graded_in_shares(request: GradeRequest, server: ForkServer) -> ShardedRun:
    run = ShardedRun(request, FAST_SHARDS)
    await asyncio.gather(
        *(run_grading(shard.request, run=shard, spawner=server) for shard in run.shards)
    )
    return run


async def test_the_fork_server_grades_a_run_while_another_is_stuck(tmp_path: Path) -> None:
    stuck = write(
        tmp_path,
        "stuck.py",
        with_claim("async def claim_next_job(worker_id):\n    while True:\n        pass\n"),
    )
    good = write(tmp_path, "good.py", solved_a())
    server = ForkServer()
    try:
        looping = asyncio.create_task(
            run_grading(
                GradeRequest(solution=stuck, tier="fast", tasks="A", test_timeout=60),
                spawner=server,
            )
        )
        await asyncio.sleep(0.5)
        started = time.monotonic()
        run = await run_grading(GradeRequest(solution=good, tier="fast", tasks="A"), spawner=server)
        assert run.state == "done" and run.tallies()["A"].status == "passing"
        assert not looping.done(), "the stuck run should still be going"
        assert time.monotonic() - started < 60
        looping.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await looping
        assert server.failures == 0
    finally:
        await server.close()


async def test_shares_add_up_to_the_verdicts_of_one_run(tmp_path: Path) -> None:
    path = write(tmp_path, "solution.py", newest_first())
    request = GradeRequest(solution=path, tier="fast", tasks="AB")
    server = ForkServer()
    try:
        whole = await run_grading(request, spawner=server)
        shared = await graded_in_shares(request, server)
        again = await graded_in_shares(request, server)
    finally:
        await server.close()
    assert whole.state == shared.state == "done"
    assert counts(shared) == counts(whole)
    assert counts(shared)["A"][2] == "failing" and counts(shared)["B"][2] == "not started"
    # The first diagnosis is the same every run, and the same as the whole run's.
    first = shared.tallies()["A"].diagnosis
    assert first == again.tallies()["A"].diagnosis == whole.tallies()["A"].diagnosis
    assert len(shared.tests) == len(whole.tests)


@pytest.mark.parametrize("backend", BACKENDS)
async def test_pytest_grade_and_watch_mode_give_one_first_diagnosis_by_the_declared_order(
    tmp_path: Path, backend: str
) -> None:
    """A retry that ignores retry_after fails several of Task C's tests, each with its own
    diagnosis; whichever share runs which, and with C graded first (as watch mode does after a
    save of C), the first diagnosis is the one of the test declared first, as pytest gives it."""
    wrong = CATALOGUE_DIR / "c_ignores_retry_after.py"
    path = write(tmp_path, "solution.py", wrong.read_text())
    url, db = DATABASES[backend]
    request = GradeRequest(solution=path, db_url=url, tier="fast", tasks="C", focus="C")
    server = ForkServer()
    try:
        whole = await run_grading(request, spawner=server)  # as `python -m harness grade`
        shared = await graded_in_shares(request, server)  # as watch mode
    finally:
        await server.close()
    report = graded_json(
        f"--solution={path}", f"--db={db}", "--kata-tier=fast", "--kata-task=C", tmp_path=tmp_path
    )
    told = report["tasks"]["C"]["diagnosis"]
    assert told and whole.tallies()["C"].failed > 1
    assert _same_test(whole.tallies()["C"].diagnosis, told)
    assert _same_test(shared.tallies()["C"].diagnosis, told)


def _same_test(diagnosis: str | None, other: str) -> bool:
    """Two diagnoses of the same test: equal but for the waits measured and the ids drawn."""

    def shape(text: str) -> str:
        return re.sub(r"\d+(\.\d+)?", "#", re.sub(r" \(and \d+ more\)$", "", text))

    return diagnosis is not None and shape(diagnosis) == shape(other)


async def test_watch_mode_grades_the_fast_tier_in_shares_from_the_warm_server(
    tmp_path: Path,
) -> None:
    path = write(tmp_path, "solution.py", solved_a())
    started: list[AnyRun] = []
    server = ForkServer()
    try:
        await grade_pipeline(
            GradeRequest(solution=path, tasks="A"),
            start="fast",
            on_start=started.append,
            on_update=lambda run: None,
            spawner=server,
        )
    finally:
        await server.close()
    fast, full = started
    assert isinstance(fast, ShardedRun) and len(fast.shards) == FAST_SHARDS
    assert fast.tier == "fast" and fast.all_passing
    assert isinstance(full, GradeRun) and full.tier == "full" and full.all_passing


def test_a_share_that_crashed_makes_the_run_crashed_and_says_why() -> None:
    run = ShardedRun(GradeRequest(solution=Path("solution.py"), tier="fast"), 3)
    for index, shard in enumerate(run.shards):
        shard.apply({"event": "collected", "tests": [{"id": f"t{index}", "task": "A"}]})
        shard.apply({"event": "result", "id": f"t{index}", "task": "A", "outcome": "pass"})
    run.shards[0].stop("done")
    assert run.running and run.state == "running"
    run.shards[1].stop("crashed", "the grading process exited with status 0 without a report")
    run.shards[2].stop("done")
    assert not run.running and run.state == "crashed"
    assert run.message == "the grading process exited with status 0 without a report"


def test_a_task_is_not_complete_while_a_share_has_not_said_what_it_holds() -> None:
    run = ShardedRun(GradeRequest(solution=Path("solution.py"), tier="fast"), 2)
    first = run.shards[0]
    first.apply({"event": "collected", "tests": [{"id": "t1", "task": "A"}]})
    first.apply({"event": "result", "id": "t1", "task": "A", "outcome": "pass"})
    first.stop("done")
    assert not run.tallies()["A"].complete  # the second share may hold more of A's tests
    second = run.shards[1]
    second.apply({"event": "collected", "tests": [{"id": "t2", "task": "A"}]})
    second.apply({"event": "result", "id": "t2", "task": "A", "outcome": "pass"})
    second.stop("done")
    assert run.tallies()["A"].complete and run.tallies()["A"].passed == 2


@functools.cache
def fast_tier_tests() -> tuple[str, ...]:
    """The node ids of the fast tier's tests, in task order (as the grading plugin orders them)."""
    command = [sys.executable, "-m", "pytest", "harness/grading", "--kata-tier", "fast"]
    listed = subprocess.run(
        [*command, "--collect-only", "-q", "-p", "no:cacheprovider"],
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return tuple(line for line in listed.splitlines() if "::" in line)


def name(node_id: str) -> str:
    return node_id.split("::")[-1]


def end_to_end(node_id: str) -> bool:
    return node_id.startswith("harness/grading/test_end_to_end.py::")


def test_every_fast_tier_test_has_a_measured_duration() -> None:
    tests = [name(test) for test in fast_tier_tests()]
    assert len(set(tests)) == len(tests), "shares find a test's duration by its name"
    missing = sorted(set(tests) - set(durations()))
    gone = sorted(set(durations()) - set(tests))
    rerun = "measure again: python -m harness.devtools.durations"
    assert not missing, f"{rerun} ({len(missing)} new, first {missing[0]})"
    assert not gone, f"{rerun} ({len(gone)} no longer in the fast tier, first {gone[0]})"


@pytest.mark.parametrize("count", [1, 2, 3, 6, 9])
def test_shares_hold_every_test_once_in_task_order(count: int) -> None:
    tests = list(fast_tier_tests())
    shares = [
        share(tests, index, count, name=name, alone=end_to_end) for index in range(1, count + 1)
    ]
    assert sorted(test for part in shares for test in part) == sorted(tests)
    for part in shares:
        assert part == [test for test in tests if test in part]
    if count > 1:
        assert shares[-1] == [test for test in tests if end_to_end(test)] != []


def test_shares_differ_in_length_by_at_most_their_longest_test() -> None:
    # Dealt longest first to the shortest share: the verdict waits for the longest share, and no
    # share is longer than another by more than one test.
    known = durations()
    tests = [test for test in fast_tier_tests() if not end_to_end(test)]
    shares = [share(tests, index, 5, name=name) for index in range(1, 6)]
    lengths = [sum(known[name(test)] for test in part) for part in shares]
    assert max(lengths) - min(lengths) <= max(known[name(test)] for test in tests)
