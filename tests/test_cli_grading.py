"""The CLI's grading machinery: reading the solution's source, running the grader in a
subprocess (timeouts, crashes, output, cancellation, the fork server), and turning runs into the
board's rows and the progress file."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from dataclasses import replace
from pathlib import Path
from typing import IO

import pytest

from harness.cli import grading_process, pytest_events
from harness.cli.forkserver import ForkServer
from harness.cli.grading_process import (
    Child,
    GradeRequest,
    SubprocessSpawner,
    run_grading,
    stuck_at,
)
from harness.cli.pipeline import Scoreboard
from harness.cli.results import GradeRun
from harness.cli.sources import (
    PRISTINE_PATH,
    changed_tasks,
    function_span,
    reference_header,
    reference_section,
    stub_tasks,
    syntax_problem,
)
from harness.grading.diagnosis import not_started
from harness.progress import Progress
from harness.worker.solutions import REFERENCE_PATH

STUB = PRISTINE_PATH.read_text()
REFERENCE = REFERENCE_PATH.read_text()


def with_function(source: str, name: str, new: str) -> str:
    span = function_span(source, name)
    assert span is not None
    lines = source.splitlines(keepends=True)
    return "".join(lines[: span[0]]) + new + "".join(lines[span[1] :])


def solved_a(source: str = STUB) -> str:
    return with_function(source, "claim_next_job", reference_section(REFERENCE, "A"))


# --- sources -------------------------------------------------------------------------------------


def test_stub_tasks_names_the_untouched_functions_in_the_graders_words() -> None:
    stubs = stub_tasks(STUB)
    assert set(stubs) == set("ABCDEFG")
    assert stubs["B"] == not_started("create_campaign_jobs")
    assert stubs["E"] == not_started("claim_next_job")
    after_a = stub_tasks(solved_a())
    assert set(after_a) == set("BCDEFG") and after_a["E"] == not_started("process_job")
    # C alone does not stop the end-to-end run from being graded: process_job may not use it.
    only_c = with_function(solved_a(), "process_job", "async def process_job(job):\n    pass\n")
    assert set(stub_tasks(only_c)) == {"B", "C", "F", "G"}
    assert stub_tasks("def broken(:\n") == {}


def test_a_function_that_does_more_than_raise_is_not_a_stub() -> None:
    source = with_function(
        STUB,
        "claim_next_job",
        (
            "async def claim_next_job(worker_id):\n    print(worker_id)\n"
            "    raise NotImplementedError\n"
        ),
    )
    assert "A" not in stub_tasks(source)


def test_changed_tasks_follow_the_functions_that_changed() -> None:
    assert changed_tasks(STUB, solved_a()) == "A"
    assert changed_tasks(None, STUB) == ""
    assert changed_tasks(STUB, STUB + "\n# a comment\n") == ""
    helper = STUB + "\n\ndef _helper():\n    return 1\n"
    assert changed_tasks(STUB, helper) == ""  # a helper may serve any task
    assert changed_tasks(STUB, "def broken(:\n") == ""


def test_syntax_problem_says_where() -> None:
    assert syntax_problem(STUB, "solution.py") is None
    problem = syntax_problem(STUB + "\ndef oops(:\n", "/x/solution.py")
    assert problem is not None
    assert problem.startswith("SyntaxError at solution.py:") and "def oops(:" in problem


def test_the_reference_splits_into_header_and_one_section_per_task() -> None:
    header = reference_header(REFERENCE)
    assert "from harness import" in header and "# --- Task" not in header
    for task, function in (
        ("A", "claim_next_job"),
        ("B", "create_campaign_jobs"),
        ("C", "send_email_step"),
        ("D", "process_job"),
    ):
        section = reference_section(REFERENCE, task)
        assert section.startswith(f"# --- Task {task}")
        assert f"async def {function}(" in section
        assert section.count("# --- Task") == 1
    with pytest.raises(KeyError):
        reference_section(REFERENCE, "E")


def test_the_event_plugin_and_the_runner_agree_on_their_environment() -> None:
    assert (pytest_events.EVENTS_ENV, pytest_events.FOCUS_ENV) == (
        grading_process.EVENTS_ENV,
        grading_process.FOCUS_ENV,
    )


def test_stuck_at_finds_the_solutions_frame_in_a_stack_dump(tmp_path: Path) -> None:
    solution = tmp_path / "solution.py"
    dump = [
        "noise",
        "Timeout (0:00:01.500000)!",
        "Thread 0x01 (most recent call first):",
        f'  File "{solution}", line 42 in claim_next_job',
        '  File "/harness/grading/kit.py", line 9 in call',
    ]
    assert stuck_at(dump, solution) == "solution.py:42 in claim_next_job()"
    assert stuck_at(dump[:3], solution) is None


# --- running the grader --------------------------------------------------------------------------


class RecordingSpawner(SubprocessSpawner):
    def __init__(self) -> None:
        self.children: list[Child] = []

    async def spawn(self, args: list[str], env: dict[str, str], output: IO[bytes]) -> Child:
        child = await super().spawn(args, env, output)
        self.children.append(child)
        return child


def write(tmp_path: Path, source: str) -> Path:
    path = tmp_path / "solution.py"
    path.write_text(source)
    return path


def looping(tmp_path: Path) -> Path:
    return write(
        tmp_path,
        with_function(
            STUB,
            "claim_next_job",
            ("async def claim_next_job(worker_id):\n    while True:\n        pass\n"),
        ),
    )


async def test_a_run_that_stops_finishing_tests_is_killed_and_says_where(tmp_path: Path) -> None:
    path = looping(tmp_path)
    run = await run_grading(GradeRequest(solution=path, tier="fast", tasks="A", test_timeout=4))
    assert run.state == "timed out"
    assert run.message is not None
    assert run.message.startswith("timed out after 4 s in test_")
    assert "claim_next_job() looks stuck" in run.message
    assert "solution.py:" in run.message and "in claim_next_job()" in run.message
    tally = run.tallies()["A"]
    assert tally.status == "failing" and tally.diagnosis == run.message


async def test_a_run_over_its_time_limit_is_killed(tmp_path: Path) -> None:
    run = await run_grading(
        GradeRequest(solution=looping(tmp_path), tier="fast", tasks="A", timeout=3, test_timeout=60)
    )
    assert run.state == "timed out"
    assert run.message == (
        "timed out after 3 s: the whole fast tier did not finish within its time limit"
    )


async def test_a_solution_that_ends_the_grading_process_fails_saying_so(tmp_path: Path) -> None:
    # The grader's own parent process (see harness.grading.supervisor) outlives the child the
    # solution ended, and reports it: the run is done, and failing.
    path = write(
        tmp_path,
        with_function(
            STUB,
            "claim_next_job",
            ("async def claim_next_job(worker_id):\n    import os\n    os._exit(7)\n"),
        ),
    )
    run = await run_grading(GradeRequest(solution=path, tier="fast", tasks="A"))
    assert run.state == "done" and not run.all_passing
    diagnosis = run.tallies()["A"].diagnosis
    assert diagnosis is not None
    assert diagnosis.startswith(
        f"the solution ended the grading process with os._exit(7) at {path.name}:"
    )
    assert "(exit status 7, no report) during test_" in diagnosis


async def test_what_the_solution_prints_is_kept_and_capped(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        with_function(
            STUB,
            "claim_next_job",
            (
                "async def claim_next_job(worker_id):\n"
                "    for n in range(30):\n        print(f'claiming {n}')\n    return None\n"
            ),
        ),
    )
    run = await run_grading(GradeRequest(solution=path, tier="fast", tasks="A"))
    assert run.state == "done"
    assert run.output.truncated and run.output.dropped > 0
    assert len(run.output.lines) == 20
    assert run.output.lines[-1] == "claiming 29"


async def test_cancelling_a_run_kills_its_process_group(tmp_path: Path) -> None:
    spawner = RecordingSpawner()
    seen: list[GradeRun] = []
    task = asyncio.create_task(
        run_grading(
            GradeRequest(solution=looping(tmp_path), tier="fast", tasks="A", test_timeout=60),
            on_update=seen.append,
            spawner=spawner,
        )
    )
    while not seen or not seen[-1].tests:
        await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (child,) = spawner.children
    for _ in range(100):  # killed at once; gone once the kernel has torn it down
        if not alive_in_group(child.pid):
            break
        await asyncio.sleep(0.02)
    assert alive_in_group(child.pid) == []
    assert seen[-1].state == "cancelled"


def alive_in_group(pgid: int) -> list[int]:
    """The processes of group ``pgid`` still running. Not ``killpg(pgid, 0)``: the grader's
    forked child, killed with its parent, stays a zombie until init reaps it, which the init of
    some containers never does."""
    alive = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            state, _, group = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except OSError:
            continue
        if int(group) == pgid and state != "Z":
            alive.append(int(stat.parent.name))
    return alive


async def test_the_fork_server_grades_like_a_fresh_process(tmp_path: Path) -> None:
    path = write(tmp_path, solved_a())
    server = ForkServer()
    try:
        for _ in range(2):
            run = await run_grading(
                GradeRequest(solution=path, tier="fast", tasks="A"), spawner=server
            )
            assert run.state == "done", (run.message, list(run.raw)[-5:])
            assert run.tallies()["A"].status == "passing"
        assert server.failures == 0
        # A killed fork is reported as killed, and the server goes on.
        looped = looping(tmp_path)
        run = await run_grading(
            GradeRequest(solution=looped, tier="fast", tasks="A", test_timeout=3), spawner=server
        )
        assert run.state == "timed out"
        assert "in claim_next_job()" in (run.message or "")
        assert run.returncode == -signal.SIGKILL
    finally:
        await server.close()


def children_of(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid and stat[0] != "Z":
                found.append(int(entry.name))
    return found


async def test_a_run_cancelled_while_its_fork_is_on_the_way_leaves_no_orphan(
    tmp_path: Path,
) -> None:
    server = ForkServer()
    await server.warm()
    assert server._process is not None
    zygote = server._process.pid
    looped = looping(tmp_path)
    try:
        for turns in (0, 1, 3, 10):
            task = asyncio.create_task(
                run_grading(
                    GradeRequest(solution=looped, tier="fast", tasks="A", test_timeout=60),
                    spawner=server,
                )
            )
            for _ in range(turns):
                await asyncio.sleep(0)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            for _ in range(100):  # the fork's pid may still be on its way
                if not server._pending and not children_of(zygote):
                    break
                await asyncio.sleep(0.05)
            orphans = children_of(zygote)
            assert orphans == [], (
                turns,
                [Path(f"/proc/{pid}/cmdline").read_bytes()[:200] for pid in orphans],
            )
        run = await run_grading(
            GradeRequest(solution=write(tmp_path, solved_a()), tier="fast", tasks="A"),
            spawner=server,
        )
        assert run.state == "done" and run.tallies()["A"].status == "passing"
    finally:
        await server.close()


# --- the scoreboard ------------------------------------------------------------------------------


def finished(request: GradeRequest, results: dict[str, list[str | None]]) -> GradeRun:
    """A run that graded ``results``: task -> one diagnosis per test (None: passed)."""
    run = GradeRun(request)
    run.apply(
        {
            "event": "collected",
            "tests": [
                {"id": f"t_{task}_{n}", "task": task}
                for task, outcomes in results.items()
                for n in range(len(outcomes))
            ],
        }
    )
    for task, outcomes in results.items():
        for n, diagnosis in enumerate(outcomes):
            run.apply(
                {
                    "event": "result",
                    "id": f"t_{task}_{n}",
                    "task": task,
                    "outcome": "pass" if diagnosis is None else "fail",
                    "diagnosis": diagnosis,
                }
            )
    run.stop("done")
    return run


@pytest.fixture
def request_(tmp_path: Path) -> GradeRequest:
    return GradeRequest(solution=tmp_path / "solution.py", db_url="sqlite:///kata.db")


def test_rows_follow_the_fast_then_the_full_tier(request_: GradeRequest, tmp_path: Path) -> None:
    progress = Progress.load(tmp_path / "progress.json")
    board = Scoreboard("sqlite", progress)
    fast = finished(
        replace(request_, tier="fast"),
        {"A": [None, None], "B": [None, "B made 50,000 round trips"]},
    )
    board.add(fast)
    board.record(fast)
    rows = board.rows()
    assert (rows["A"].status, rows["A"].tier, rows["A"].passed, rows["A"].total) == (
        "passing",
        "fast",
        2,
        2,
    )
    assert rows["B"].status == "failing" and rows["B"].diagnosis == "B made 50,000 round trips"
    assert rows["C"].status == "not graded"
    assert not progress.passed("A")  # the fast tier is not the bar

    full = GradeRun(replace(request_, tasks="A"))
    board.add(full)
    assert board.rows()["A"].grading and board.rows()["A"].status == "passing"
    full.apply({"event": "collected", "tests": [{"id": "full_A", "task": "A"}]})
    full.apply({"event": "result", "id": "full_A", "task": "A", "outcome": "pass"})
    full.stop("done")
    board.record(full)
    assert board.rows()["A"].tier == "full" and not board.rows()["A"].grading
    assert progress.passed("A") and progress.tasks["A"].backends == ["sqlite"]


def test_a_second_backend_makes_both_backends_or_says_where_it_failed(
    request_: GradeRequest,
) -> None:
    board = Scoreboard("sqlite")
    board.add(finished(request_, {"A": [None], "B": [None]}))
    second = replace(request_, db_url="postgresql://h/db")
    board.add(finished(second, {"A": [None], "B": ["two workers claimed job 7"]}))
    rows = board.rows()
    assert rows["A"].status == "passing on both backends"
    assert rows["B"].status == "failing"
    assert rows["B"].diagnosis == "on postgresql: two workers claimed job 7"


def test_a_new_version_makes_the_rows_stale_until_graded_again(request_: GradeRequest) -> None:
    board = Scoreboard("sqlite")
    board.add(finished(request_, {"A": [None]}))
    board.new_version()
    assert board.rows()["A"].stale and board.rows()["A"].status == "passing"
    assert not board.rows()["B"].stale  # never graded: nothing to be stale about
    board.not_started({"B": not_started("create_campaign_jobs")})
    assert board.rows()["B"].status == "not started"
    board.add(finished(request_, {"A": ["oops"]}))
    assert not board.rows()["A"].stale and board.rows()["A"].status == "failing"


def test_a_run_stopped_part_way_keeps_what_it_did_not_reach(request_: GradeRequest) -> None:
    board = Scoreboard("sqlite")
    board.add(finished(request_, {"A": [None], "B": [None]}))
    board.new_version()
    run = GradeRun(request_)
    run.apply({"event": "collected", "tests": [{"id": "a", "task": "A"}, {"id": "b", "task": "B"}]})
    run.apply({"event": "start", "id": "a"})
    run.stop("timed out", "timed out after 20 s in a")
    board.add(run)
    rows = board.rows()
    assert rows["A"].status == "failing" and rows["A"].diagnosis == "timed out after 20 s in a"
    assert rows["B"].status == "passing" and rows["B"].stale
