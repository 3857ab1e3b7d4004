"""``python -m harness dev``: watch the solution, re-grade on every save, keep the board up.

One asyncio loop does everything: the watcher and the keys post commands; a controller handles
them one at a time (so that a save cancels the stale run before the next one starts); the
pipeline grades in subprocesses; a drawer redraws the board when something changed, at most
twenty times a second, and not at all when nothing happens.

``KATA_TRACE=path`` appends timestamped events (save noticed, run started and finished) as JSON
lines, for benchmarks/bench_watch.py.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import os
import signal
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

from rich.console import Console
from rich.live import Live
from rich.text import Text

from ..record.events import SessionRecorder
from ..record.store import Store
from ..sql.orm import utcnow
from ..tasks import FUNCTIONS, LETTERS, TaskStatus
from .app import App
from .board import BoardPanel, BoardState, panel_body, render_board
from .forkserver import ForkServer
from .grading_process import GradeRequest
from .hints import LEVEL_NAMES, LEVELS, hint
from .interview import TOTAL_MINUTES, EndedInterview, clock, end_interview, minutes, summary
from .keys import ESC, KeyReader, cbreak
from .pager import body_rows, line_count, parse_timeline, scrolled
from .pipeline import Scoreboard, grade_pipeline
from .shards import AnyRun
from .sources import changed_tasks, reference_section, stub_tasks, syntax_problem
from .watch import watch_file

__all__ = ["TRACE_ENV", "DevSession"]

TRACE_ENV = "KATA_TRACE"
_FRAME = 0.05  # seconds: at most this often a redraw
_PASSING = (TaskStatus.PASSING, TaskStatus.PASSING_ON_BOTH)
#: The scrolling keys of an open panel, as its bottom edge says them.
_SCROLL = "↑↓ j k PgUp PgDn"


class DevSession:
    def __init__(
        self,
        app: App,
        request: GradeRequest,
        *,
        second_db: str | None = None,
        interview: bool = False,
        force_polling: bool = False,
        console: Console | None = None,
    ) -> None:
        self.app = app
        self.request = request
        self.path = request.solution
        self.second_db = second_db
        self.force_polling = force_polling
        self.console = console or app.terminal.console
        self.interactive = self.console.is_terminal
        self.scoreboard = Scoreboard(request.backend, app.progress_for(request.solution))
        self.record = SessionRecorder.open(Store.in_home(app.home), self.path, interview=interview)
        self.state: BoardState = app.board_state(
            request, second_db=second_db, watching="starting the watcher…"
        )
        self.interview = interview
        self.ended_interview: EndedInterview | None = None
        self.pipeline: asyncio.Task[None] | None = None
        self.graded_source: str | None = None  # the version being graded (or rejected)
        self.compiled_source: str | None = None  # the last version that compiled
        self.syntax_notice: str | None = None
        self.commands: asyncio.Queue[str] = asyncio.Queue()
        self.quit = asyncio.Event()
        self.dirty = asyncio.Event()
        self.run_started = asyncio.Event()
        self._print_board = False
        self._reference_turn = -1
        self._trace_path = os.environ.get(TRACE_ENV)
        self.spawner = ForkServer()
        self._answered: AnyRun | None = None
        self._ended: AnyRun | None = None
        self._live: Live | None = None
        #: The replay command shown whole off the board (``c``): any key goes back.
        self._showing_command = False

    # --- the loop ------------------------------------------------------------------------------

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        if self.interview:
            self._start_interview()
        else:
            self._end_leftover_interview()
        with self._signals(loop), cbreak(sys.stdin), self._display() as live:
            reader = self._key_reader()
            workers = [
                asyncio.create_task(coroutine)
                for coroutine in (
                    self._controller(),
                    self._drawer(live),
                    self._ticker(),
                    self.spawner.warm(),
                    watch_file(
                        self.path,
                        self._file_event,
                        on_mode=self._watch_mode,
                        force_polling=self.force_polling,
                    ),
                )
            ]
            self.commands.put_nowait("grade")
            try:
                await self.quit.wait()
            finally:
                if reader is not None:
                    reader.close()
                await self._cancel_pipeline()
                for worker in workers:
                    worker.cancel()
                await asyncio.gather(*workers, return_exceptions=True)
                await self.spawner.close()
        if self.interview:
            self._end_interview("you quit")
        self.record.close()
        self._refresh()
        self.state.keys, self.state.watching, self.state.screen = False, None, None
        self.console.print(render_board(self.state))
        replay = self._replay()
        if replay is not None:  # one line of its own, folded whole by the terminal: to copy
            self.console.print(Text(f"replay the race: {replay}", style="dim"), soft_wrap=True)

    @contextlib.contextmanager
    def _signals(self, loop: asyncio.AbstractEventLoop) -> Iterator[None]:
        handled = [signal.SIGINT, signal.SIGTERM]
        for signum in handled:
            loop.add_signal_handler(signum, self.quit.set)
        loop.add_signal_handler(signal.SIGWINCH, self.dirty.set)
        try:
            yield
        finally:
            for signum in [*handled, signal.SIGWINCH]:
                loop.remove_signal_handler(signum)

    @contextlib.contextmanager
    def _display(self) -> Iterator[Live | None]:
        if not self.interactive:
            yield None
            return
        live = Live(
            console=self.console,
            screen=True,
            auto_refresh=False,
            redirect_stdout=False,
            redirect_stderr=False,
        )
        with live:
            self._live = live
            try:
                yield live
            finally:
                self._live = None

    def _key_reader(self) -> KeyReader | None:
        try:
            return KeyReader(sys.stdin, self.on_key)
        except (OSError, ValueError, NotImplementedError):  # no usable stdin
            return None

    async def _controller(self) -> None:
        while True:
            command = await self.commands.get()
            if command == "changed":
                try:
                    source = self.path.read_text()
                except (OSError, UnicodeDecodeError):
                    continue  # mid-rename or deleted: the next event brings the new file
                if source == self.graded_source:
                    continue  # no new content (an editor touching the file, a rename echo)
                self._trace("change")
                self.record.save(source)
                await self._grade(source, "fast")
            elif command in ("grade", "full"):
                try:
                    source = self.path.read_text()
                except OSError as error:
                    self.syntax_notice = f"cannot read {self.path}: {error}"
                    self._changed(print_board=True)
                    continue
                await self._grade(source, "full" if command == "full" else "fast")

    async def _grade(self, source: str, start: str) -> None:
        await self._cancel_pipeline()
        self.scoreboard.new_version()
        self.state.info = None
        focus = changed_tasks(self.compiled_source, source)
        self.graded_source = source
        self.syntax_notice = syntax_problem(source, str(self.path))
        if self.syntax_notice:
            self.syntax_notice += " — fix it and save; the board shows the last results"
            self._trace("syntax-error")
            self._changed(print_board=True)
            return
        self.compiled_source = source
        stubs = stub_tasks(source)
        self.scoreboard.not_started(stubs)
        tasks = "".join(task for task in LETTERS if task not in stubs)
        if not tasks:
            self.state.info = "every task is still a stub: nothing to grade yet"
            self._trace("all-stubs")
            self._changed(print_board=True)
            return
        request = dataclasses.replace(
            self.request, focus=focus, tasks="" if tasks == LETTERS else tasks
        )
        self.pipeline = asyncio.create_task(
            grade_pipeline(
                request,
                second_db=self.second_db,
                start=start,
                on_start=self._run_started,
                on_update=self._run_updated,
                spawner=self.spawner,
            )
        )
        self.pipeline.add_done_callback(self._pipeline_done)
        self._changed()

    def _pipeline_done(self, pipeline: asyncio.Task[None]) -> None:
        if not pipeline.cancelled() and (error := pipeline.exception()) is not None:
            # A bug of ours, not the candidate's: say it on the board instead of going quiet.
            what = f"{type(error).__name__}: {error}"
            self.syntax_notice = f"the watcher could not grade this version ({what}); press r"
            self._changed(print_board=True)

    async def _cancel_pipeline(self) -> None:
        pipeline, self.pipeline = self.pipeline, None
        if pipeline is not None and not pipeline.done():
            pipeline.cancel()
            await asyncio.wait({pipeline})
            self._trace("cancelled")

    def _run_started(self, run: AnyRun) -> None:
        self.scoreboard.add(run)
        self._trace("run-start", tier=run.tier, backend=run.backend)
        self.run_started.set()
        self._changed()

    def _run_updated(self, run: AnyRun) -> None:
        if run.answered_at is not None and run is not self._answered:
            self._answered = run  # every verdict is in; the process is still exiting
            self._trace(
                "results",
                tier=run.tier,
                backend=run.backend,
                elapsed=round(run.answered_at - run.started, 3),
            )
        # A run in shares is told it ended twice (by its last share, then once all are in):
        # it ends, is recorded and is printed once.
        ended = not run.running and run is not self._ended
        if ended:
            self._ended = run
            self.scoreboard.record(run)
            self._trace(
                "run-end",
                tier=run.tier,
                backend=run.backend,
                state=run.state,
                elapsed=round(run.elapsed(), 3),
                tasks={t: tally.status for t, tally in run.tallies().items()},
            )
        self._changed(print_board=ended)

    async def _drawer(self, live: Live | None) -> None:
        while True:
            await self.dirty.wait()
            self.dirty.clear()
            self._refresh()
            if live is not None:
                if not self._showing_command:  # off the board: it is drawn on the way back
                    live.update(render_board(self.state), refresh=True)
            elif self._print_board:
                self._print_board = False
                self.console.print(render_board(self.state))
            await asyncio.sleep(_FRAME)

    async def _ticker(self) -> None:
        """Redraw for the clocks (a run's elapsed time, the interview's countdown) only while
        one is going: an idle board costs nothing."""
        while True:
            running = any(run.running for run in self.scoreboard.runs)
            if running or self.interview:
                self.dirty.set()
                await asyncio.sleep(0.25 if running else 1.0)
            else:
                self.run_started.clear()
                await self.run_started.wait()

    def _changed(self, *, print_board: bool = False) -> None:
        self._print_board = self._print_board or print_board
        self.dirty.set()

    # --- inputs --------------------------------------------------------------------------------

    def _file_event(self) -> None:
        self.commands.put_nowait("changed")

    def _watch_mode(self, mode: str) -> None:
        self.state.watching = mode
        self._changed()

    def on_key(self, key: str) -> None:
        if self._showing_command:  # any key: back to the board
            self._back_to_board()
        elif self.state.panel is not None and self._on_panel_key(key):
            pass
        elif (key := key.lower()) == "q":
            self.quit.set()
        elif key == "r":
            self.commands.put_nowait("grade")
        elif key == "f":
            self.commands.put_nowait("full")
        elif key == "h":
            self._show_hint()
        elif key == "s":
            self._show_reference()
        elif key == "t":
            self._show_timeline()
        elif key == ESC:
            self.state.panel = self.state.info = None
        else:
            return
        self._changed()

    def _on_panel_key(self, key: str) -> bool:
        """The keys of an open panel: scroll it, close it (q, Esc), show the replay command
        (c, a race's timeline); whether ``key`` was one of them."""
        panel = self.state.panel
        assert panel is not None
        if key in ("q", "Q", ESC):
            self.state.panel = self.state.info = None
        elif key in ("c", "C") and panel.kind == "timeline":
            self._show_command()
        else:
            width, height = self.state.screen or self.console.size
            rows = body_rows(height)
            total = line_count(panel_body(panel, rows), width)
            offset = scrolled(panel.offset, key, total=total, rows=rows)
            if offset is None:
                return False
            panel.offset = offset
        self._changed()
        return True

    def _replay(self) -> str | None:
        """The replay command of the race on the board, if there is one."""
        failing = self.state.first_failing()
        return parse_timeline(failing.timeline)[1] if failing and failing.timeline else None

    def _show_command(self) -> None:
        """The replay command on one line of its own, off the board (the board's box is
        narrower than many a test id, and a command cut in two cannot be copied); sent to the
        clipboard too, where the terminal takes OSC 52. Any key goes back to the board."""
        replay = self._replay()
        if replay is None:
            return
        if self._live is None:  # no screen to leave: say it where the board is printed
            self.console.print(Text(f"replay the race: {replay}"), soft_wrap=True)
            return
        self._live.stop()
        self._showing_command = True
        self.console.print(
            Text(
                "Replay the race with (on the clipboard too, if the terminal allows):", style="bold"
            )
        )
        self.console.print(Text(replay), soft_wrap=True)
        self.console.print(Text("any key: back to the board", style="dim"))
        if self.console.is_terminal:
            encoded = base64.b64encode(replay.encode()).decode()
            self.console.file.write(f"\x1b]52;c;{encoded}\x07")
            self.console.file.flush()

    def _back_to_board(self) -> None:
        self._showing_command = False
        if self._live is not None:
            self._live.start()
        self._changed()

    def current_task(self) -> str | None:
        """The first task of A-D that does not pass yet; once they all pass, the first stretch
        task (F, G) that does not."""
        rows = self.scoreboard.rows()
        return next((task for task in FUNCTIONS if rows[task].status not in _PASSING), None)

    def _show_hint(self) -> None:
        task = self.current_task()
        if task is None:
            self.state.info = "every task passes: no hint needed"
            return
        progress = self.app.progress
        level = min(progress.hint_level(task) + 1, LEVELS)
        progress.see_hint(task, level)
        text = hint(task, level).text
        if level < LEVELS:
            after = f"h: {LEVEL_NAMES[level]}"
        else:
            after = "the last level"
            text += f"\n\n*`python -m harness hint {task} --level N` prints any level.*"
        self.state.panel = BoardPanel(
            f"hint for {task} · {FUNCTIONS[task]}() · {level} of {LEVELS}: "
            f"{LEVEL_NAMES[level - 1]}",
            text,
            keys=f"{after} · {_SCROLL} · q/Esc: back",
        )
        self.state.info = None

    def _show_timeline(self) -> None:
        """The timeline behind the first failing task's diagnosis, when it was a race."""
        failing = self.state.first_failing()
        if failing is None or not failing.timeline:
            self.state.info = "no race to show: a timeline comes with a concurrency failure"
            return
        self.record.timeline(failing.task)
        self.state.panel = BoardPanel(
            f"what happened: {failing.task} · {FUNCTIONS.get(failing.task, 'end to end')}",
            "\n".join(failing.timeline),
            kind="timeline",
            keys=f"c: replay command · {_SCROLL} · q/Esc: back",
        )
        self.state.info = None

    def _show_reference(self) -> None:
        passed = [task for task in FUNCTIONS if self.app.progress.passed(task)]
        if not passed:
            self.state.info = (
                "the reference of a task shows once it passes the full tier; none has yet"
            )
            return
        self._reference_turn = (self._reference_turn + 1) % len(passed)
        task = passed[self._reference_turn]
        self.state.panel = BoardPanel(
            f"reference for {task} · {FUNCTIONS[task]}()",
            reference_section(self.app.reference_text(), task),
            kind="python",
            keys=f"s: next passed task · {_SCROLL} · q/Esc: back",
        )
        self.state.info = None

    # --- the board's state ---------------------------------------------------------------------

    def _refresh(self) -> None:
        now = time.monotonic()
        state = self.state
        state.tasks = self.scoreboard.rows()
        size = self.console.size
        state.screen = (size.width, size.height) if self._live is not None else None
        state.runs = self.scoreboard.run_lines(now)
        failed = [
            run
            for run in self.scoreboard.runs
            if run.message and not run.running and run.state != "cancelled"
        ]
        state.notice = self.syntax_notice or (failed[-1].message if failed else None)
        with_output = [run for run in self.scoreboard.runs if run.output.lines]
        latest = with_output[-1] if with_output else None
        state.output = list(latest.output.lines) if latest else []
        state.output_dropped = latest.output.dropped if latest else 0
        interview = self.app.progress.interview
        if self.interview and interview is not None:
            state.interview = clock(interview.started_at, utcnow())
            if (shown := self.record.phase(state.interview.part_name)) is not None:
                state.panel = BoardPanel(shown.title, shown.body)
            if state.interview.finished:
                self._end_interview("time is up")
        if self.ended_interview is not None:
            state.interview_summary = summary(self.ended_interview)

    def _end_interview(self, why: str) -> None:
        """The interview is over: nothing graded from now on counts towards it."""
        ended = end_interview(self.app.progress, self.app.interviews_path, why)
        if ended is None:
            return
        self.ended_interview = ended
        self.record.phase(f"ended: {why}")
        if why != "time is up":  # the clock says "time is up" itself
            self.state.interview = None
            self.state.interview_ended = f"ended after {minutes(ended.length)} ({why})"

    def _end_leftover_interview(self) -> None:
        """An interview whose session never quit (a closed terminal, a crash) must not collect
        the passes of a session that is not an interview."""
        current = self.app.progress.interview
        ended = end_interview(
            self.app.progress,
            self.app.interviews_path,
            "left open; ended by a dev without --interview",
        )
        if current is not None and ended is not None:
            self.state.info = (
                f"the interview started at {_local(current.started_at)} was still "
                "open: it has ended, and this session does not count towards it"
            )

    def _start_interview(self) -> None:
        progress = self.app.progress
        current = progress.interview
        if current is not None and utcnow() - current.started_at > timedelta(minutes=TOTAL_MINUTES):
            end_interview(progress, self.app.interviews_path, "time is up")
            current = None
        if current is None:
            progress.start_interview()
            self.state.info = "interview started: 60 minutes, starting with design"
        else:
            self.state.info = f"interview resumed (started {_local(current.started_at)})"

    def _trace(self, event: str, **fields: Any) -> None:
        if self._trace_path:
            with open(self._trace_path, "a", encoding="utf-8") as trace:
                trace.write(json.dumps({"t": time.time(), "event": event, **fields}) + "\n")


def _local(when: datetime) -> str:
    return when.astimezone().strftime("%H:%M")
