"""A warm process that forks grading runs, so that a save is graded without a cold start.

Most of a small grading run is Python starting and importing pytest, hypothesis, the database
drivers and the harness. The fork server does that once; each run is then a ``fork()`` of it that
calls ``pytest.main``: still a separate process (in its own session, killed with its process
group, its crashes its own), but one that starts in milliseconds.

What the server must not import: the grading plugin, the test modules, ``conftest.py`` and
``harness.cli.pytest_events``. pytest rewrites the asserts of those as it imports them, and one
already imported cannot be rewritten. Third-party plugins (pytest-asyncio, hypothesis) are
imported, and their "already imported, cannot be rewritten" warnings silenced (see
``runner.grade_command``): their own asserts are not what is graded.

Protocol, one JSON object per line. The client writes ``{"args": [...], "env": {...},
"output": path}``; the server answers ``{"pid": N}`` once it has forked, then
``{"pid": N, "status": S}`` when that child ends (S negative: killed by signal -S), or
``{"error": ...}`` instead of both when it could not start one. Several runs may go at once (the
pids come in the order of the requests; the ends in the order they happen). The server exits
when its stdin closes, once its children have ended.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import os
import selectors
import signal
import sys
import time
from collections import deque
from typing import IO, Any

from ..paths import PROJECT_ROOT
from .grading_process import Child, SubprocessSpawner, kill_process

__all__ = ["ForkServer", "main"]

#: Imported once by the server, for every run (see the module docstring for what must not be).
_WARM = (
    "pytest",
    "_pytest.python",
    "_pytest.fixtures",
    "_pytest.assertion.rewrite",
    "pytest_asyncio.plugin",
    "hypothesis",
    "hypothesis.strategies",
    "_hypothesis_pytestplugin",
    "rich.console",
    "rich.table",
    "aiosqlite",
    "psycopg",
    "psycopg_pool",
    "harness",
    "harness.sql.isolation",
    "harness.worker.runner",
    "harness.grading.kit",
    "harness.grading.scorecard",
    "harness.grading.invariants",
    "harness.grading.processes",
    "harness.world.crashes",
    "harness.world.faults",
)


# --- the server ----------------------------------------------------------------------------------


def main() -> None:
    # Our stdout carries the protocol: keep it to ourselves and point fd 1 at /dev/null, so
    # that nothing imported can write into it.
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 1)
    for name in _WARM:
        with contextlib.suppress(ImportError):
            __import__(name)
    # What is imported lives as long as the server: moved out of the collector's sight, a
    # child's collections (pytest makes several as a session ends) no longer walk all of it, and
    # no longer write to every page of it, which a forked child would have to copy first.
    gc.collect()
    gc.freeze()
    protocol.write(json.dumps({"ready": True}) + "\n")
    # Several runs at once (watch mode grades the fast tier in shares): never block on one
    # child. A child's end wakes the loop through SIGCHLD's wakeup pipe, a request through stdin.
    wakeup, wake = os.pipe()
    os.set_blocking(wake, False)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    signal.set_wakeup_fd(wake)
    requests = sys.stdin.fileno()
    selector = selectors.DefaultSelector()
    selector.register(requests, selectors.EVENT_READ)
    selector.register(wakeup, selectors.EVENT_READ)
    children: set[int] = set()
    partial, reading = b"", True
    while reading or children:
        for key, _ in selector.select():
            if key.fd == wakeup:
                os.read(wakeup, 4096)
            elif chunk := os.read(requests, 65536):
                *lines, partial = (partial + chunk).split(b"\n")
                for line in lines:
                    pid = _fork(line, protocol, null, (wakeup, wake))
                    if pid is not None:
                        children.add(pid)
            else:  # stdin closed: finish what was asked, then exit
                reading = False
                selector.unregister(requests)
        for pid, status in _reap(children):
            protocol.write(json.dumps({"pid": pid, "status": status}) + "\n")


def _fork(line: bytes, protocol: IO[str], null: int, wakeup: tuple[int, int]) -> int | None:
    """Fork the run asked for by ``line``; its pid, or None when it could not start."""
    try:
        request = json.loads(line)
        # Gone already when its run was cancelled before we got to it: say so, and go on.
        # (Never created here: that could put it back into a directory being removed.)
        output = os.open(request["output"], os.O_WRONLY | os.O_APPEND)
    except (OSError, ValueError, KeyError) as error:
        protocol.write(json.dumps({"error": f"{type(error).__name__}: {error}"}) + "\n")
        return None
    pid = os.fork()
    if pid == 0:
        protocol.close()
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        for fd in wakeup:
            os.close(fd)
        _child(request, output, null)
    os.close(output)
    protocol.write(json.dumps({"pid": pid}) + "\n")
    return pid


def _reap(children: set[int]) -> list[tuple[int, int]]:
    """The children that have ended (removed from ``children``), with their exit statuses."""
    ended = []
    for pid in list(children):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            children.discard(pid)
            ended.append((pid, os.waitstatus_to_exitcode(status)))
    return ended


def _child(request: dict[str, Any], output: int, null: int) -> None:
    code = 3
    try:
        os.setsid()
        os.dup2(null, 0)
        os.dup2(output, 1)
        os.dup2(output, 2)
        os.close(output)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.chdir(PROJECT_ROOT)
        os.environ.clear()
        os.environ.update(request["env"])
        import tempfile

        tempfile.tempdir = None  # found again from the run's TMPDIR, not the server's
        sys.stdin = open(os.devnull)  # noqa: SIM115 - the child's for good
        sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]
        import pytest

        code = int(pytest.main(request["args"]))
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


# --- the client ----------------------------------------------------------------------------------


class _Forked:
    def __init__(self, pid: int, status: asyncio.Future[int]) -> None:
        self.pid = pid
        self._status = status

    async def wait(self) -> int:
        return await asyncio.shield(self._status)


class ForkServer:
    """A ``Spawner`` that forks runs from a warm server, started on first use and restarted when
    the harness's own code changes (so that it never grades with stale harness code) or when it
    died. When it cannot start, runs fall back to fresh subprocesses.

    A run cancelled while its fork is being asked for (a save right after a save) must not leave
    an orphan: the fork's pid still arrives, and that child is killed at once."""

    def __init__(self) -> None:
        self._process: asyncio.subprocess.Process | None = None
        self._started = 0.0
        self._reader: asyncio.Task[None] | None = None
        self._ready: asyncio.Future[bool] | None = None
        # The pids of the forks asked for, in order: the server answers requests in turn, so
        # the next pid it sends belongs to the oldest request still waiting (which may be one a
        # cancelled run left behind).
        self._pending: deque[asyncio.Future[int]] = deque()
        self._statuses: dict[int, asyncio.Future[int]] = {}
        self._fallback = SubprocessSpawner()
        self._lock = asyncio.Lock()
        self._restart: asyncio.Task[None] | None = None
        self.failures = 0

    async def spawn(self, args: list[str], env: dict[str, str], output: IO[bytes]) -> Child:
        if self.failures < 3:
            try:
                return await self._fork(args, env, output)
            except (OSError, EOFError, ValueError, TimeoutError):
                self.failures += 1
                await self.close()
        return await self._fallback.spawn(args, env, output)

    async def warm(self) -> None:
        """Start the server now rather than at the first run."""
        if self.failures < 3:
            try:
                async with self._lock:
                    await self._ensure()
            except (OSError, EOFError, ValueError, TimeoutError):
                self.failures += 1
                await self.close()

    async def _ensure(self) -> None:
        """A live, current server. Starting or stopping one is never left half done by a
        cancelled run: it goes on in its own task, which the next run waits for."""
        if self._restart is None or (self._restart.done() and self._needs_restart()):
            self._restart = asyncio.create_task(self._restart_server())
        await asyncio.shield(self._restart)

    def _needs_restart(self) -> bool:
        process = self._process
        return process is None or process.returncode is not None or self._stale()

    async def _restart_server(self) -> None:
        await self._stop()
        await self._start()

    async def _fork(self, args: list[str], env: dict[str, str], output: IO[bytes]) -> Child:
        async with self._lock:  # one request at a time, answered in order
            await self._ensure()
            process = self._process
            assert process is not None and process.stdin is not None
            pending = asyncio.get_running_loop().create_future()
            self._pending.append(pending)
            process.stdin.write(
                (json.dumps({"args": args, "env": env, "output": output.name}) + "\n").encode()
            )
            try:
                await process.stdin.drain()
                pid = await asyncio.wait_for(asyncio.shield(pending), timeout=10)
            except BaseException:  # cancelled or timed out: whenever the fork comes, end it
                pending.add_done_callback(self._kill_orphan)
                raise
        return _Forked(pid, self._status_of(pid))

    def _kill_orphan(self, pending: asyncio.Future[int]) -> None:
        if not pending.cancelled() and pending.exception() is None:
            kill_process(pending.result())

    def _status_of(self, pid: int) -> asyncio.Future[int]:
        if pid not in self._statuses:
            self._statuses[pid] = asyncio.get_running_loop().create_future()
        return self._statuses[pid]

    def _dispatch(self, message: dict[str, Any]) -> None:
        if message.get("ready") and self._ready is not None and not self._ready.done():
            self._ready.set_result(True)
        elif "status" in message:  # may come before anyone waits for it: kept until then
            status = self._status_of(int(message["pid"]))
            if not status.done():
                status.set_result(int(message["status"]))
        elif "pid" in message and self._pending:
            pending = self._pending.popleft()
            if not pending.done():
                pending.set_result(int(message["pid"]))
        elif "error" in message and self._pending:
            pending = self._pending.popleft()
            if not pending.done():
                pending.set_exception(OSError(message["error"]))

    async def _start(self) -> None:
        env = {**os.environ}
        # Bytecode caching on, as for the runs themselves (see child_environment).
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        self._ready = asyncio.get_running_loop().create_future()
        self._process = process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            "from harness.cli.forkserver import main; main()",
            cwd=PROJECT_ROOT,
            env=env,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        self._started = time.time()
        self._reader = asyncio.create_task(self._read(process))
        await asyncio.wait_for(asyncio.shield(self._ready), timeout=60)

    async def _read(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            while line := await process.stdout.readline():
                with contextlib.suppress(ValueError):
                    self._dispatch(json.loads(line))
        finally:
            # Gone: whoever waits hears it. A child whose end we never heard of was killed.
            gone = EOFError("the fork server went away")
            for future in (self._ready, *self._pending):
                if future is not None and not future.done():
                    future.set_exception(gone)
            self._pending.clear()
            for status in self._statuses.values():
                if not status.done():
                    status.set_result(-signal.SIGKILL)
            self._statuses.clear()

    def _stale(self) -> bool:
        sources = [
            *(PROJECT_ROOT / "harness").rglob("*.py"),
            PROJECT_ROOT / "conftest.py",
            PROJECT_ROOT / "pyproject.toml",
        ]
        newest = 0.0
        for path in sources:
            with contextlib.suppress(OSError):
                newest = max(newest, path.stat().st_mtime)
        return newest > self._started

    async def close(self) -> None:
        """Stop the server (after any start or restart under way)."""
        restart, self._restart = self._restart, None
        if restart is not None and restart is not asyncio.current_task():
            with contextlib.suppress(Exception):
                await restart
        await self._stop()

    async def _stop(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.returncode is None:
            # Politely first: at the end of its input the server finishes what it was asked
            # (the forks of cancelled runs are killed as their pids arrive) and exits.
            if process.stdin is not None:
                process.stdin.close()
            try:
                await asyncio.wait_for(process.wait(), timeout=5)
            except TimeoutError:
                kill_process(process.pid)
                await process.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError, EOFError):
                await asyncio.wait_for(self._reader, timeout=5)
            self._reader = None


if __name__ == "__main__":
    main()
