"""Solutions that attack the grader get a clear failed verdict, quickly, and never a pass.

Each program in ``fixtures/solutions/hostile/`` ends, hangs, floods, tampers with or damages the
process that grades it (see its docstring). It is graded as a candidate would grade it: ``pytest``
on the fast tier and its task, with ``--kata-json``, and ``python -m harness grade``; both must
fail, say what happened (``EXPECTED_MESSAGE``, or one per backend), and finish within
``EXPECTED_SECONDS``. The project's files must come out untouched (``canary.txt`` is what one of
them tries to delete), and so must what those against the database aim at: a schema and a SQLite
file of somebody else's (``database_canaries``); no role of a run may outlive it.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import closing, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

import psycopg
import pytest

from conftest import BACKENDS, POSTGRES_URL
from harness.devtools.selftest import constants
from harness.grading.processes import worker_processes
from harness.paths import PROJECT_ROOT
from harness.sql.isolation import ROLE_PREFIX, RUN_LOCK_CLASS

HOSTILE_DIR = PROJECT_ROOT / "fixtures" / "solutions" / "hostile"
CANARY = HOSTILE_DIR / "canary.txt"
#: What the hostile programs against the database aim at, outside the grading's own database.
CANARY_SCHEMA = "kata_canary"
CANARY_DB = HOSTILE_DIR / "canary.db"
#: Files that appear only if an attack got through.
NEVER_CREATED = (
    PROJECT_ROOT / "kata-hostile-attached.db",
    Path(tempfile.gettempdir()) / "kata-hostile-copy-to-program",
)
URLS = {"sqlite": f"sqlite:///{PROJECT_ROOT / 'kata.db'}", "postgresql": POSTGRES_URL}
#: Wide enough that no verdict is wrapped across lines (rich and pytest both read COLUMNS).
ENVIRONMENT = {**os.environ, "COLUMNS": "400", "HYPOTHESIS_PROFILE": "fast"}


@dataclass(frozen=True)
class Hostile:
    path: Path
    task: str
    message: str | dict[str, str]  # one for every backend, or one per backend
    board: str | dict[str, str]  # what `python -m harness grade` says (its time limits may answer)
    backends: tuple[str, ...]
    seconds: float

    @property
    def name(self) -> str:
        return self.path.stem

    def on(self, backend: str) -> Hostile:
        """What to expect of it on ``backend``."""
        return replace(
            self,
            message=_on(self.message, backend),
            board=_on(self.board, backend),
        )


def _on(expected: str | dict[str, str], backend: str) -> str:
    return expected if isinstance(expected, str) else expected[backend]


def hostile_programs() -> list[Hostile]:
    """Every program in the hostile directory, read without importing it (some end the process
    that imports them)."""
    programs = []
    for path in sorted(HOSTILE_DIR.glob("*.py")):
        values = constants(ast.parse(path.read_text()))
        programs.append(
            Hostile(
                path=path,
                task=values["EXPECTED_TASK"],
                message=values["EXPECTED_MESSAGE"],
                board=values.get("EXPECTED_BOARD", values["EXPECTED_MESSAGE"]),
                backends=tuple(values.get("EXPECTED_BACKENDS", ("sqlite",))),
                seconds=float(values.get("EXPECTED_SECONDS", 30)),
            )
        )
    return programs


PROGRAMS = hostile_programs()
#: Graded elsewhere, with the same two entry points and a bound on the time to the verdict (it
#: waits out a whole test's limit: grading it twice would cost the suite over a minute more).
ELSEWHERE = {"heartbeat_busy_loop": "tests/test_supervisor_deadlines.py"}
ANY_BACKEND = [
    pytest.param(p.on("sqlite"), id=p.name)
    for p in PROGRAMS
    if p.backends == ("sqlite",) and p.name not in ELSEWHERE
]
EVERY_BACKEND = [
    pytest.param(p.on(backend), backend, id=f"{p.name}-{backend}")
    for p in PROGRAMS
    if p.backends != ("sqlite",)
    for backend in BACKENDS
    if backend in p.backends
]


def run(command: list[str], program: Hostile) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    completed = subprocess.run(
        command,
        cwd=PROJECT_ROOT,
        env=ENVIRONMENT,
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
        timeout=program.seconds + 90,
    )
    return completed, time.monotonic() - started


def assert_failed_clearly(program: Hostile, url: str, tmp_path: Path) -> None:
    results = tmp_path / "results.json"
    graded_by_pytest = [
        sys.executable,
        "-m",
        "pytest",
        str(PROJECT_ROOT / "harness" / "grading"),
        f"--solution={program.path}",
        f"--db={url}",
        "--kata-tier=fast",
        f"--kata-task={program.task}",
        f"--kata-json={results}",
        "-q",
        "-p",
        "no:cacheprovider",
    ]
    graded_by_grade = [
        sys.executable,
        "-m",
        "harness",
        "grade",
        f"--solution={program.path}",
        f"--db={url}",
        "--tier=fast",
        f"--task={program.task}",
    ]
    # Both entry points at once: each grades in a database of its own, and most of a hostile
    # program's time is a limit waited out, so the two waits overlap.
    with ThreadPoolExecutor(max_workers=2) as pool:
        by_grade = pool.submit(run, graded_by_grade, program)
        completed, seconds = run(graded_by_pytest, program)
        graded, graded_seconds = by_grade.result()
    output = completed.stdout + completed.stderr
    assert completed.returncode == 1, (completed.returncode, output[-3000:])
    assert isinstance(program.message, str) and isinstance(program.board, str)
    assert program.message in output, output[-3000:]
    assert seconds <= program.seconds, f"pytest took {seconds:.1f} s"
    verdict = json.loads(results.read_text())
    task = verdict["tasks"][program.task[0]]
    assert verdict["status"] != "pass" and task["status"] != "passing", verdict
    assert program.message in (task["diagnosis"] or ""), task

    completed, seconds = graded, graded_seconds
    board = completed.stdout + completed.stderr
    assert completed.returncode == 1, (completed.returncode, board[-3000:])
    assert program.board in board, board[-3000:]
    assert seconds <= program.seconds, f"python -m harness grade took {seconds:.1f} s"
    assert CANARY.exists(), "a hostile solution deleted a file of the project"


@pytest.mark.parametrize("program", ANY_BACKEND)
def test_a_hostile_solution_fails_with_a_clear_verdict(program: Hostile, tmp_path: Path) -> None:
    """SQLite only: these attack the grading process (its exit, its signals, its time, its
    objects, its files), not the database, so the backend changes nothing in what they do;
    grading each twice more on PostgreSQL would only spend a minute of CPU."""
    assert_failed_clearly(program, URLS["sqlite"], tmp_path)


@pytest.mark.parametrize(("program", "backend"), EVERY_BACKEND)
def test_a_hostile_solution_against_the_database_fails_on_every_backend(
    program: Hostile, backend: str, tmp_path: Path
) -> None:
    with database_canaries():
        assert_failed_clearly(program, URLS[backend], tmp_path)


@contextmanager
def database_canaries() -> Iterator[None]:
    """Somebody else's schema (made by the configured user) and SQLite file, which must come out
    as they went in; files no attack may create; and no role of a dead run left behind."""
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA IF NOT EXISTS {CANARY_SCHEMA}")
        conn.execute(f"CREATE TABLE IF NOT EXISTS {CANARY_SCHEMA}.alive (x int)")
        conn.execute(
            f"INSERT INTO {CANARY_SCHEMA}.alive SELECT 1 "
            f"WHERE NOT EXISTS (SELECT FROM {CANARY_SCHEMA}.alive)"
        )
    with closing(sqlite3.connect(CANARY_DB)) as lite, lite:
        lite.execute("CREATE TABLE IF NOT EXISTS alive (x)")
        lite.execute("INSERT INTO alive SELECT 1 WHERE NOT EXISTS (SELECT 1 FROM alive)")
    for path in NEVER_CREATED:
        path.unlink(missing_ok=True)
    yield
    with psycopg.connect(POSTGRES_URL, autocommit=True) as conn:
        rows = conn.execute(f"SELECT count(*) FROM {CANARY_SCHEMA}.alive").fetchone()
        assert rows == (1,), rows
        assert orphan_roles(conn) == []
    with closing(sqlite3.connect(CANARY_DB)) as lite:
        assert lite.execute("SELECT count(*) FROM alive").fetchone() == (1,)
    assert not [path.name for path in NEVER_CREATED if path.exists()]


def orphan_roles(conn: psycopg.Connection[tuple[object, ...]]) -> list[str]:
    """Roles of runs on this database whose run is gone: no session holds the run's advisory
    lock (see ``harness.sql.isolation``). Live runs of other suites hold theirs."""
    names = [
        str(row[0])
        for row in conn.execute(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) "
            "AND shobj_description(oid, 'pg_authid') LIKE '%%in database ' || current_database() "
            "|| ';%%'",
            [ROLE_PREFIX],
        )
    ]
    orphans = []
    for name in names:
        key = [RUN_LOCK_CLASS, name]
        row = conn.execute("SELECT pg_try_advisory_lock(%s, hashtext(%s))", key).fetchone()
        if row and row[0]:
            conn.execute("SELECT pg_advisory_unlock(%s, hashtext(%s))", key)
            orphans.append(name)
    return orphans


def test_every_hostile_program_is_graded() -> None:
    """The two parametrized tests above cover the whole directory, each program on its
    backends."""
    database = {p.name for p in PROGRAMS if p.backends != ("sqlite",)}
    assert len(ANY_BACKEND) + len(database) + len(ELSEWHERE) == len(PROGRAMS) >= 15
    for name, where in ELSEWHERE.items():
        assert name in (PROJECT_ROOT / where).read_text().lower().replace("-", "_"), where
    assert all(isinstance(_on(p.message, "sqlite"), str) for p in PROGRAMS)
    assert all(backend in p.backends for p in PROGRAMS for backend in ("sqlite",)), PROGRAMS


def test_worker_processes_are_killed_when_their_test_times_out() -> None:
    """Task A's separate-processes test must not leave claimers running after its time limit
    (a claim that never returns, in each of them)."""
    pids: list[int] = []

    async def claim_for_ever() -> None:
        loop = asyncio.get_running_loop()
        with worker_processes(2) as pool:
            pids.extend(
                await asyncio.gather(*(loop.run_in_executor(pool, os.getpid) for _ in "ab"))
            )
            await asyncio.gather(*(loop.run_in_executor(pool, time.sleep, 1000) for _ in "ab"))

    async def within_a_time_limit() -> None:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(2):
                await claim_for_ever()

    started = time.monotonic()
    asyncio.run(within_a_time_limit())
    assert time.monotonic() - started < 30
    assert pids
    for pid in set(pids):
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", pid
