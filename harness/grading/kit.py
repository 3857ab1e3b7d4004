"""What the graded tests use to drive a solution.

The harness sets up every precondition itself, with its own SQL: a Task C test gets a job that
the harness claimed, never one claimed by the candidate's ``claim_next_job``, so that a bug in one
task can never fail another task's tests. Every call into the candidate's code goes through
``Kata.call``, which records what the candidate is doing (for "timed out after N s while ...")
and attributes API calls to a worker and a job.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import signal
import threading
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any, TypeVar

import pytest

from ..exceptions import WorkerCrashed
from ..scope import acting_as
from ..sql.database import Database
from ..sql.models import MAX_ATTEMPTS, Campaign, Job, JobStatus, JobTransition, Step
from ..sql.orm import utcnow
from ..tasks import FUNCTIONS
from ..worker.solutions import Solution
from ..world import World
from ..world.crashes import CrashPlan, WorkerLife, worker_life
from ..world.faults import FaultPlan
from ..world.history import History, Timeline
from ..world.ledger import Ledger, Violation
from ..world.services import Services
from . import schema_watch, tamper
from .afterlife import kept_going
from .confinement import OUTPUT_LIMIT
from .diagnosis import describe_exception, describe_violation, fail

__all__ = ["FAST", "FULL", "Kata", "LoopBlocked", "Sizes", "graded"]

F = TypeVar("F", bound=Callable[..., Awaitable[Any]])


@dataclass(frozen=True, kw_only=True)
class Sizes:
    """How big the graded loads are. The fast tier gives watch mode an answer in seconds.

    How many scenarios Task D's exploration tries is hypothesis's profile, not a size: ``fast``
    (3, what watch mode sets) or ``thorough`` (12, the default), from ``HYPOTHESIS_PROFILE``."""

    claim_jobs: int
    claim_trials: int
    claim_workers: int = 20
    claim_processes: int
    bulk_rows: int
    bulk_round_trips: int = 250
    e2e_jobs: int


FULL = Sizes(
    claim_jobs=1000,
    claim_trials=2,
    claim_processes=4,
    bulk_rows=50_000,
    e2e_jobs=300,
)
FAST = Sizes(
    claim_jobs=300,
    claim_trials=1,
    claim_processes=2,
    bulk_rows=5_000,
    e2e_jobs=60,
)


class LoopBlocked(BaseException):
    """Raised by the hard timeout when the event loop itself stopped turning."""

    def __init__(self, seconds: float, frame: FrameType | None):
        super().__init__(f"the event loop was blocked for {seconds:g} s")
        self.seconds = seconds
        self.frame = frame
        outermost = tamper.outermost_candidate_frame(frame)
        #: The solution's function that held the loop (its outermost frame), if it was the one.
        self.function = outermost.f_code.co_name if outermost is not None else None


#: Seconds the event loop may go without turning before the code holding it is interrupted: no
#: correct solution (nor the grader) keeps it that long, even on a loaded machine.
BLOCKED_AFTER = 10.0
_TICK = 0.25  # how often the loop's heartbeat beats, and the watcher looks at it
_AGAIN = 0.1  # after an interruption, how soon the watcher looks again


@contextmanager
def hard_timeout(
    seconds: float, *, loop: asyncio.AbstractEventLoop | None = None
) -> Iterator[None]:
    """A last resort for code that blocks the loop (a busy loop, synchronous I/O), where
    ``asyncio.timeout`` can never fire: the main thread is interrupted with ``LoopBlocked``
    wherever it is, by SIGALRM sent to it alone (never to the database drivers' threads).

    A watcher thread sends it when ``loop`` has not turned for ``BLOCKED_AFTER`` seconds (its
    heartbeat, a callback every ``_TICK``, stopped), or ``seconds`` after the start whatever the
    loop does. It keeps interrupting until the block ends: every ``_AGAIN`` seconds while the
    loop still does not turn, the candidate's code, if it is running, gets ``LoopBlocked`` too
    (the grader's own code, running between two of its busy workers, is left alone). So a test
    whose twenty workers all spin ends within seconds, and is never left to an outer kill."""
    if (
        not hasattr(signal, "pthread_kill")
        or threading.current_thread() is not threading.main_thread()
    ):
        yield
        return
    main = threading.main_thread().ident
    assert main is not None
    started = time.monotonic()
    beat = [started]
    ticking: list[asyncio.TimerHandle] = []

    def tick() -> None:
        beat[0] = time.monotonic()
        ticking[:] = [loop.call_later(_TICK, tick)] if loop is not None else []

    if loop is not None:
        tick()
    armed = [True]
    fired: list[float] = []

    def interrupt(signum: int, frame: FrameType | None) -> None:
        if not armed[0] or (fired and tamper.candidate_frame(frame) is None):
            return
        blocked = time.monotonic() - (beat[0] if loop is not None else started)
        fired.append(blocked)
        raise LoopBlocked(round(fired[0]), frame)

    stop = threading.Event()

    def watch() -> None:
        wait = _TICK
        while not stop.wait(wait):
            now = time.monotonic()
            due = now - started >= seconds
            if loop is not None and not fired:
                due = due or now - beat[0] >= BLOCKED_AFTER
            elif loop is not None:
                due = now - beat[0] >= _TICK * 4 or now - started >= seconds
            wait = _AGAIN if due else _TICK
            if due:
                with contextlib.suppress(OSError):
                    signal.pthread_kill(main, signal.SIGALRM)

    previous = signal.signal(signal.SIGALRM, interrupt)
    watcher = threading.Thread(target=watch, name="kata-loop-watcher", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        armed[0] = False
        stop.set()
        watcher.join()
        for handle in ticking:
            handle.cancel()
        signal.signal(signal.SIGALRM, previous)


#: The solution's functions that did not return (timed out, or blocked the loop), with what to
#: say instead of calling them again: waiting out another time limit per test (615 s for one
#: ``await asyncio.sleep(forever)``) tells the candidate nothing new.
_stuck: dict[str, str] = {}


def forget_stuck_functions() -> None:
    """A new grading session: every function gets its chance again."""
    _stuck.clear()


#: A parameter of a graded family left out of the fast tier: watch mode's first answer grades
#: one member of a family of slow, alike tests, the full tier grades them all.
FULL_ONLY = pytest.mark.full_only


def graded(task: str, *, timeout: float = 30.0, full_only: bool = False) -> Callable[[F], F]:
    """Mark a test with its task and give it a time limit that reports what the candidate was
    doing, instead of hanging. ``full_only`` tests (processes, large loads) are left out of the
    fast tier that watch mode runs first.

    Around the test: a task whose function did not return in an earlier test fails at once;
    after it, an operation the grader refused to the solution, a thread of the solution's still
    running, or a change to the kata's schema fails the test whatever else happened, since each
    explains (or invalidates) the rest."""

    def decorate(test: F) -> F:
        @functools.wraps(test)
        async def run(*args: Any, **kwargs: Any) -> Any:
            kata: Kata | None = kwargs.get("kata")
            own = FUNCTIONS.get(task)
            if own in _stuck:
                fail(_stuck[own])
            refused = len(tamper.violations())
            denied = len(kata.database.refusals) if kata else 0
            schema = await schema_watch.schema_of(kata.database) if kata else None
            limit = None
            try:
                with hard_timeout(timeout + 10, loop=asyncio.get_running_loop()):
                    async with asyncio.timeout(timeout) as limit:
                        result = await test(*args, **kwargs)
            except TimeoutError:
                if limit is None or not limit.expired():
                    raise
                _fail_if_refused(refused)
                deadline = limit.when()
                function = kata.cut_off(deadline) if kata and deadline is not None else None
                if function:
                    _stuck.setdefault(
                        function,
                        f"{function} did not return in {test.__name__} (timed out after "
                        f"{timeout:g} s); not run again",
                    )
                doing = kata.phase if kata else "running the test"
                fail(f"timed out after {timeout:g} s while {doing}")
            except LoopBlocked as blocked:
                _fail_if_refused(refused)
                function = blocked.function
                if function not in FUNCTIONS.values() and kata:
                    function = kata.current_function
                if function:
                    _stuck.setdefault(
                        function,
                        f"{function} blocked the event loop in {test.__name__} (for "
                        f"{blocked.seconds:g} s); not run again",
                    )
                raise
            except (KeyboardInterrupt, SystemExit) as error:
                if not tamper.raised_by_solution(error):
                    raise
                await _check_after(kata, schema, refused, denied)
                fail(solution_raised(error, kata))
            except asyncio.CancelledError:
                raise
            except BaseException as error:
                await _check_after(kata, schema, refused, denied)
                _fail_if_flooded(error, kata, test.__name__)
                raise
            await _check_after(kata, schema, refused, denied)
            return result

        marked = pytest.mark.task(task, timeout=timeout)(run)
        if full_only:
            marked = pytest.mark.full_only(marked)
        return marked  # type: ignore[return-value]

    return decorate


def solution_raised(error: BaseException, kata: Kata | None) -> str:
    """The diagnosis of a KeyboardInterrupt or SystemExit the solution raised in a test."""
    function = kata.current_function if kata else None
    if kata is not None:
        said = describe_exception(error, kata.solution.path, function).replace(":  at ", " at ")
    else:
        said = f"the solution raised {type(error).__name__}"
    return (
        f"{said} — a task function must never raise {type(error).__name__}: it stops the whole "
        "worker process, not one job"
    )


def _fail_if_flooded(error: BaseException, kata: Kata | None, test: str) -> None:
    """A write past the output limit (a print in a loop), whatever the test made of it."""
    seen: BaseException | None = error
    while seen is not None and not (isinstance(seen, OSError) and seen.errno == errno.EFBIG):
        seen = seen.__cause__ or seen.__context__
    if seen is None:
        return
    function = (kata.current_function if kata else None) or "the solution"
    frames = [
        f for f in traceback.extract_tb(seen.__traceback__) if tamper.is_candidate_file(f.filename)
    ]
    at = f" at {Path(frames[-1].filename).name}:{frames[-1].lineno}" if frames else ""
    written = f"{function}() wrote more than {OUTPUT_LIMIT >> 20} MB of output"
    if kata and kata.current_function:
        _stuck.setdefault(kata.current_function, f"{written} in {test}; not run again")
    fail(f"{written} (a print in a loop?){at}, the most a graded test may write")


#: Why the rest of the run cannot go on (a thread of the solution's spinning in the grader),
#: for the plugin to stop the session with.
abandoned: list[str] = []


def _fail_if_refused(refused: int) -> None:
    new = tamper.violations()[refused:]
    if new:
        more = f" (and {len(new) - 1} more)" if len(new) > 1 else ""
        fail(
            f"{new[0]}{more}: the grader refuses it — a solution reads and writes the kata's "
            "tables and calls the services, nothing else"
        )


async def _check_after(
    kata: Kata | None, schema: dict[str, str] | None, refused: int, denied: int = 0
) -> None:
    _fail_if_refused(refused)
    if kata is not None and len(kata.database.refusals) > denied:
        # Even if the solution caught it: the statement reached past the grading's database.
        new = kata.database.refusals[denied:]
        more = f" (and {len(new) - 1} more)" if len(new) > 1 else ""
        fail(f"{new[0]}{more} — a solution reads and writes the kata's tables, nothing else")
    threads = tamper.running_threads()
    if threads:
        message = (
            f"{threads[0]} after the test ended — a solution's work must be done (or "
            "cancelled) when its function returns"
        )
        abandoned.append(message)  # it runs on in this process: the rest of the run stops
        fail(message)
    if kata is None or schema is None:
        return
    try:
        changes = schema_watch.schema_changes(schema, await schema_watch.schema_of(kata.database))
    except Exception as error:  # the database itself is unusable: that is the verdict
        fail(
            f"the kata's database could not be read after the test ({type(error).__name__}: "
            f"{error}) — did the solution drop or lock its tables?"
        )
    if changes:
        more = f" (and {len(changes) - 1} more changes)" if len(changes) > 1 else ""
        fail(
            f"the solution changed the kata's schema: {changes[0]}{more} — a solution reads "
            "and writes rows; it never drops, creates or alters tables"
        )


class Kata:
    """One graded test's world: the solution, a fresh database, the fake services."""

    def __init__(
        self,
        solution: Solution,
        world: World,
        *,
        seed: int,
        sizes: Sizes,
        tier: str,
    ) -> None:
        self.solution = solution
        #: The test's world: its fresh database and its fake services (``faults`` swaps them).
        self.world = world
        self.seed = seed
        self.sizes = sizes
        self.tier = tier
        self.phase = "setting up"
        self.current_function: str | None = None
        #: (loop time, function) of each call cancelled before it returned: those cancelled by
        #: the test's time limit are the functions that did not return.
        self.cancelled_calls: list[tuple[float, str]] = []
        #: Every statement of the test, for the timeline of a race (see ``explain``).
        self.history = History()
        self.history.attach(world.database)
        #: The timeline behind the test's failure, when it failed for a concurrency reason.
        self.evidence: Timeline | None = None
        self._ledgers: list[Ledger] = [world.services.ledger]
        self._crash_plans: list[CrashPlan] = []

    @property
    def database(self) -> Database:
        return self.world.database

    @property
    def services(self) -> Services:
        return self.world.services

    # --- evidence ---------------------------------------------------------------------------

    def watch(self, services: Services | None = None, crash_plan: CrashPlan | None = None) -> None:
        """Services or a crash plan the test made itself (a runner's): their calls, crashes and
        recoveries belong in its timelines too."""
        # By identity: two empty ledgers (or two plans alike) are equal, and both count.
        if services is not None and all(services.ledger is not kept for kept in self._ledgers):
            self._ledgers.append(services.ledger)
        if crash_plan is not None and all(crash_plan is not p for p in self._crash_plans):
            self._crash_plans.append(crash_plan)

    def explain(self, jobs: Iterable[int], workers: Iterable[str] | None = None) -> Timeline:
        """The timeline of ``jobs`` (by ``workers``), kept as the evidence of the test's failure:
        the grader shows it under the diagnosis and writes it to ``--kata-json``."""
        self.evidence = self.history.timeline(
            jobs,
            workers,
            calls=[call for ledger in self._ledgers for call in ledger.calls],
            crashes=[crash for plan in self._crash_plans for crash in plan.crashes],
            recoveries=[r for ledger in self._ledgers for r in ledger.recoveries],
        )
        return self.evidence

    def explain_problem(self, problem: str) -> None:
        """The timeline of a judged problem that names its jobs and workers (see invariants)."""
        jobs = getattr(problem, "jobs", None)
        if jobs:
            self.explain(jobs, getattr(problem, "workers", None))

    # --- world building (the harness's own SQL, never the candidate's) ----------------------

    @contextmanager
    def faults(self, plan: FaultPlan) -> Iterator[Services]:
        """Swap in services with ``plan`` for the block."""
        with self.serving(Services(plan)) as services:
            yield services

    @contextmanager
    def serving(self, services: Services) -> Iterator[Services]:
        """Make ``services`` the test's fake APIs for the block; their calls join its timelines."""
        self.watch(services)
        with self.world.with_services(services):
            yield services

    async def campaign(self, name: str = "Spring launch") -> Campaign:
        return await Campaign.create(name=name)

    async def add_jobs(self, campaign_id: int, emails: list[str], **fields: Any) -> list[Job]:
        """Insert jobs directly (batched), with optional field values for all of them."""
        columns = ["campaign_id", "email", *fields]
        jobs: list[Job] = []
        for start in range(0, len(emails), 500):
            batch = emails[start : start + 500]
            marks = ", ".join("(" + ", ".join("?" for _ in columns) + ")" for _ in batch)
            params = [v for email in batch for v in (campaign_id, email, *fields.values())]
            rows = await self.database.run(
                f"INSERT INTO jobs ({', '.join(columns)}) VALUES {marks} RETURNING *", params
            )
            jobs += [Job.from_row(row) for row in rows.rows]
        return sorted(jobs, key=lambda job: job.id)

    async def running_job(
        self,
        email: str = "ada@example.com",
        worker: str = "worker-1",
        campaign_id: int | None = None,
    ) -> Job:
        """A job the harness created and claimed for ``worker``, as Task A would have."""
        if campaign_id is None:
            campaign_id = (await self.campaign()).id
        (job,) = await self.add_jobs(campaign_id, [email])
        return await self.claim_for(job.id, worker)

    async def claim_for(self, job_id: int, worker: str) -> Job:
        now = utcnow()
        await Job.filter(id=job_id).update(
            status=JobStatus.RUNNING, worker_id=worker, claimed_at=now
        )
        return await Job.get(id=job_id)

    async def expire_claim(self, job_id: int, worker: str | None) -> None:
        """What the lease does to a worker that stopped renewing its claim: the job goes back to
        the queue, and the ledger notes it (the one excuse for a second worker's early retry)."""
        sent = asyncio.get_running_loop().time()
        await Job.filter(id=job_id, status=JobStatus.RUNNING).update(status=JobStatus.PENDING)
        self.services.ledger.record_recovery(job_id, worker, at=sent)

    async def fresh(self, job: Job | int) -> Job:
        return await Job.get(id=job if isinstance(job, int) else job.id)

    async def transitions(self, job_id: int) -> list[JobTransition]:
        return await JobTransition.filter(job_id=job_id).order_by("id").all()

    # --- calling the candidate ---------------------------------------------------------------

    async def call(
        self, function: str, *args: Any, worker: str | None = None, job_id: int | None = None
    ) -> Any:
        """Call one of the solution's functions as ``worker`` (on ``job_id``)."""
        if function in _stuck:  # it did not return in an earlier test: say so at once
            fail(_stuck[function])
        shown = ", ".join(repr(a) if not isinstance(a, (list, Job)) else _short(a) for a in args)
        self.phase = f"waiting for {function}({shown})"
        self.current_function = function
        given = [a for a in args if isinstance(a, Job)]
        if given and worker is not None:  # what the worker was handed: the base of its writes
            job = given[0]
            self.history.note(
                asyncio.get_running_loop().time(),
                worker,
                f"{function}() is given job {job.id} at step {job.step.value} "
                f"({job.status.value}, worker_id {job.worker_id})",
                [job.id],
            )
        try:
            with acting_as(worker, job_id):
                result = await getattr(self.solution, function)(*args)
        except asyncio.CancelledError:
            self.cancelled_calls.append((asyncio.get_running_loop().time(), function))
            raise
        self.phase = f"after {function}({shown}) returned"
        return result

    def cut_off(self, deadline: float) -> str | None:
        """The solution's function that was still running when the time limit (``deadline``,
        in loop time) came, if one was."""
        late = [function for when, function in self.cancelled_calls if when >= deadline - 0.05]
        return late[0] if late else None

    # --- drivers that accept every correct style ---------------------------------------------

    async def drive_send_email_step(
        self, job: Job, worker: str = "worker-1", max_rounds: int = MAX_ATTEMPTS + 3
    ) -> Job:
        """Call ``send_email_step`` until the job settles: message recorded, failed, or — for a
        solution that returns the job to the queue — re-claimed by the harness once its
        ``run_after`` has come, as a worker would."""
        for _ in range(max_rounds):
            attempts = job.attempts  # before the call: the candidate may update the object it gets
            await self.call("send_email_step", job, worker=worker, job_id=job.id)
            fresh = await self.fresh(job)
            if fresh.status == JobStatus.FAILED or fresh.message_id:
                return fresh
            if fresh.status == JobStatus.PENDING:
                await self._wait_for_run_after(fresh, attempts_before=attempts)
                job = await self.claim_for(fresh.id, worker)
                continue
            fail(
                f"send_email_step returned with job {fresh.id} still {fresh.status.value}, no "
                "message_id recorded, not failed and not returned to the queue (pending) — the "
                "email was neither sent nor given up on"
            )
        fail(
            f"job {job.id} was still not settled after {max_rounds} rounds of send_email_step: "
            f"more tries than MAX_ATTEMPTS ({MAX_ATTEMPTS}) allows"
        )

    async def _wait_for_run_after(self, job: Job, attempts_before: int) -> None:
        if job.attempts <= attempts_before:
            fail(
                f"job {job.id} went back to the queue without counting the attempt "
                f"(attempts stayed {job.attempts}) — retries would never end"
            )
        delay = (job.run_after - utcnow()).total_seconds()
        if delay > 30:
            fail(
                f"job {job.id} went back to the queue with run_after {delay:.0f} s away — "
                "a retry may wait at most 30 s (the 429s here ask for at most 0.5 s): cap the "
                "backoff"
            )
        self.phase = f"waiting {max(delay, 0):.2f} s for job {job.id}'s run_after"
        await asyncio.sleep(max(delay, 0) + 0.01)

    async def process_until_settled(
        self, job: Job, worker: str = "worker-1", max_rounds: int = 4 * (MAX_ATTEMPTS + 3)
    ) -> Job:
        """The contract's worker loop for one job, with the harness's crash recovery: after a
        crash the job is returned to the queue (its lease ran out) and claimed by a new worker."""
        generation = 0
        attempts = job.attempts
        for _ in range(max_rounds):
            fresh = await self.fresh(job)
            if fresh.status in (JobStatus.COMPLETED, JobStatus.FAILED):
                return fresh
            if fresh.status == JobStatus.PENDING:
                if fresh.attempts > attempts:  # returned to the queue to retry, not after a crash
                    await self._wait_for_run_after(fresh, attempts_before=attempts)
                generation += 1
                worker = f"{worker.split('#')[0]}#{generation}"
                fresh = await self.claim_for(fresh.id, worker)
            elif fresh.worker_id != worker:
                worker = fresh.worker_id or worker
            job = fresh
            attempts = (
                fresh.attempts
            )  # before the call: the candidate may update the object it gets
            crashed = False
            # One life per call: what the worker does after a crash in it is a dead worker's.
            with worker_life() as life:
                try:
                    await self.call("process_job", fresh, worker=worker, job_id=fresh.id)
                except WorkerCrashed:
                    crashed = True
                except BaseException:
                    self._fail_if_kept_going(life, returned=False)  # the swallow is the bug
                    raise
            self._fail_if_kept_going(life, returned=not crashed)
            if crashed:
                # The worker died mid-step; its lease runs out and the job goes back to the queue.
                await self.expire_claim(fresh.id, worker)
        final = await self.fresh(job)
        fail(
            f"job {final.id} was still {final.status.value} at step {final.step.value} after "
            f"{max_rounds} calls of process_job — it does not advance"
        )

    def _fail_if_kept_going(self, life: WorkerLife, *, returned: bool) -> None:
        zombie = kept_going(life, self.solution.path, self.services.ledger, returned=returned)
        if zombie:
            fail(zombie)

    # --- checks ------------------------------------------------------------------------------

    def assert_no_violations(self) -> None:
        violations: list[Violation] = self.services.ledger.violations
        if violations:
            more = f" (and {len(violations) - 1} more)" if len(violations) > 1 else ""
            fail(describe_violation(violations[0]) + more)

    async def assert_advanced_once(self, job: Job) -> None:
        """The step only moved forward, one step at a time, each step exactly once."""
        order = list(Step)
        seen: set[tuple[Step, Step]] = set()
        for t in await self.transitions(job.id):
            if t.old_step == t.new_step:
                continue
            if order.index(t.new_step) < order.index(t.old_step):
                fail(
                    f"job {job.id} went backwards from {t.old_step.value} to {t.new_step.value} "
                    f"(by {t.worker_id}) — a stale job object was saved over newer progress"
                )
            if (t.old_step, t.new_step) in seen:
                fail(
                    f"job {job.id} advanced from {t.old_step.value} to {t.new_step.value} twice "
                    "— the advance is not a compare-and-set on the current step"
                )
            seen.add((t.old_step, t.new_step))

    def deliveries_for(self, job: Job) -> int:
        return len(self.services.ledger.deliveries_to(job.email))

    def actions_for(self, job: Job) -> int:
        return sum(1 for a in self.services.ledger.actions if a.email == job.email)


def _short(value: Any) -> str:
    if isinstance(value, Job):
        return f"<job {value.id} {value.step.value}>"
    return f"<{len(value)} items>"
