"""Crash injection: kill a worker at the worst possible moment, reproducibly.

Two moments matter for a job that must not duplicate or lose work:

* **right after an external effect** - the email left, the CRM acted, but the worker dies before
  it can write down that it did (``CrashPoint.after_effect``);
* **right before a database write** - the worker did the work but dies before the n-th statement
  that would record it (``CrashPoint.before_write``).

The fake services call ``check_after_effect``; ``check_before_write`` registers itself as the
database's ``before_write`` hook. Both are no-ops unless a ``CrashPlan`` is in the scope
(``use_crash_plan``) and a job is being processed (the scope's ``job_id``). A crash is a
``WorkerCrashed``, a ``BaseException``, so no ``except Exception`` in the candidate's code can
pretend the process survived.

Random crashes are a pure function of ``(seed, job_id, kind, counter)`` - not of a shared stream -
so a seed reproduces the same crashes however the workers interleave. Each job crashes at most
``max_crashes_per_job`` times, so every job eventually completes.

A killed process does nothing more. Code that catches ``BaseException`` can swallow the crash and
carry on as if it had survived; inside ``worker_life()`` (one call of the candidate's code) the
plan notes what such a worker still does after its crash, for the grader to report.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum

from ..exceptions import WorkerCrashed
from ..scope import caller_name, current, scoped
from ..sql.database import Database
from .faults import SERVICES, stable_random

__all__ = [
    "Crash",
    "CrashKind",
    "CrashPlan",
    "CrashPoint",
    "WorkerLife",
    "active_crash_plan",
    "check_after_effect",
    "check_before_write",
    "use_crash_plan",
    "worker_life",
]


class CrashKind(StrEnum):
    AFTER_EFFECT = "after_effect"
    BEFORE_WRITE = "before_write"


@dataclass(frozen=True, kw_only=True)
class CrashPoint:
    """One explicit place to crash. ``job_id=None`` means: once in every job."""

    kind: CrashKind
    nth: int = 1
    """The nth effect of ``service`` for the job, or the job's nth database write."""
    service: str | None = None
    job_id: int | None = None

    def __post_init__(self) -> None:
        if self.nth < 1:
            raise ValueError(f"crash points count from 1, got nth={self.nth}")
        if self.kind is CrashKind.AFTER_EFFECT and self.service not in SERVICES:
            raise ValueError(
                f"after_effect needs a service among {', '.join(SERVICES)}, got {self.service!r}"
            )

    @classmethod
    def after_effect(cls, service: str, nth: int = 1, *, job_id: int | None = None) -> CrashPoint:
        """Crash right after the job's ``nth`` effect on ``service`` took effect."""
        return cls(kind=CrashKind.AFTER_EFFECT, service=service, nth=nth, job_id=job_id)

    @classmethod
    def before_write(cls, n: int, *, job_id: int | None = None) -> CrashPoint:
        """Crash right before the job's ``n``-th INSERT/UPDATE/DELETE."""
        return cls(kind=CrashKind.BEFORE_WRITE, nth=n, job_id=job_id)

    def applies_to(self, job_id: int) -> bool:
        return self.job_id is None or self.job_id == job_id


@dataclass(frozen=True, kw_only=True)
class Crash:
    """A crash that fired: which job, where, in whose hands, when (loop time)."""

    job_id: int
    kind: CrashKind
    point: str
    caller: str
    at: float
    explicit: bool


@dataclass
class _Progress:
    """What a plan has seen so far. Counts survive crashes: a job re-run keeps counting writes."""

    writes: Counter[int] = field(default_factory=Counter)
    effects: Counter[tuple[int, str]] = field(default_factory=Counter)
    fired: set[tuple[int, CrashPoint]] = field(default_factory=set)
    crashes_per_job: Counter[int] = field(default_factory=Counter)
    crashes: list[Crash] = field(default_factory=list)


@dataclass(frozen=True, kw_only=True)
class CrashPlan:
    """Where workers crash: explicit ``points`` and/or random rates per opportunity.

    The configuration is frozen; the plan's progress (counters, crashes fired) lives alongside and
    is cleared by ``reset()``, like a ledger's.
    """

    seed: int = 0
    points: Sequence[CrashPoint] = ()
    after_effect_rate: float = 0.0
    """Chance of crashing right after each external effect."""
    before_write_rate: float = 0.0
    """Chance of crashing right before each database write."""
    max_crashes_per_job: int = 1
    _progress: _Progress = field(default_factory=_Progress, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "points", tuple(self.points))
        for name in ("after_effect_rate", "before_write_rate"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability and must be in [0, 1], got {value}")
        if self.max_crashes_per_job < 0:
            raise ValueError(f"max_crashes_per_job must be >= 0, got {self.max_crashes_per_job}")
        # Explicit points are promises ("this job crashes there"); refuse a plan that cannot keep
        # them rather than silently skipping some.
        for_any_job = sum(1 for p in self.points if p.job_id is None)
        per_job = Counter(p.job_id for p in self.points if p.job_id is not None)
        worst = for_any_job + max(per_job.values(), default=0)
        if worst > self.max_crashes_per_job:
            raise ValueError(
                f"a job has {worst} explicit crash points but max_crashes_per_job is "
                f"{self.max_crashes_per_job}; raise max_crashes_per_job"
            )

    @property
    def crashes(self) -> list[Crash]:
        """Every crash fired so far, in order."""
        return self._progress.crashes

    def crashes_of(self, job_id: int) -> list[Crash]:
        return [c for c in self._progress.crashes if c.job_id == job_id]

    def crashes_between(self, job_id: int | None, start: float, end: float = math.inf) -> int:
        """How many times ``job_id``'s worker was killed between ``start`` and ``end`` (loop
        time). Each crash excuses one more try of what the dead worker could not record (a
        permanent error, a 429): the next worker cannot know it. The services' referee and the
        grader's judge both ask this one question."""
        if job_id is None:
            return 0
        return sum(1 for c in self.crashes_of(job_id) if start <= c.at <= end)

    def reset(self) -> None:
        object.__setattr__(self, "_progress", _Progress())

    # -- the two hooks' logic -------------------------------------------------------------------

    def _before_write(self, job_id: int) -> None:
        progress = self._progress
        progress.writes[job_id] += 1
        n = progress.writes[job_id]
        self._maybe_crash(
            job_id,
            CrashKind.BEFORE_WRITE,
            matches=lambda p: p.nth == n,
            chance_key=("before_write", n),
            rate=self.before_write_rate,
            point=f"before database write #{n} of job {job_id}",
        )

    def _after_effect(self, job_id: int, service: str, effect: str | None) -> None:
        progress = self._progress
        progress.effects[(job_id, service)] += 1
        n = progress.effects[(job_id, service)]
        what = effect if effect else f"applied effect #{n}"
        self._maybe_crash(
            job_id,
            CrashKind.AFTER_EFFECT,
            matches=lambda p: p.service == service and p.nth == n,
            chance_key=(f"after_effect:{service}", n),
            rate=self.after_effect_rate,
            point=f"after {service} {what} for job {job_id}",
        )

    def _maybe_crash(
        self,
        job_id: int,
        kind: CrashKind,
        *,
        matches: Callable[[CrashPoint], bool],
        chance_key: tuple[str, int],
        rate: float,
        point: str,
    ) -> None:
        progress = self._progress
        for candidate in self.points:
            if (
                candidate.kind is kind
                and candidate.applies_to(job_id)
                and matches(candidate)
                and (job_id, candidate) not in progress.fired
            ):
                progress.fired.add((job_id, candidate))
                self._fire(job_id, kind, point, explicit=True)
        # Random crashes only use what the cap leaves after the explicit points still to come, so
        # that every explicit point keeps its promise to fire.
        if rate <= 0:
            return
        reserved = self._unfired_points(job_id)
        if progress.crashes_per_job[job_id] + reserved >= self.max_crashes_per_job:
            return
        if stable_random(self.seed, job_id, *chance_key).random() < rate:
            self._fire(job_id, kind, point, explicit=False)

    def _unfired_points(self, job_id: int) -> int:
        fired = self._progress.fired
        return sum(1 for p in self.points if p.applies_to(job_id) and (job_id, p) not in fired)

    def _fire(self, job_id: int, kind: CrashKind, point: str, *, explicit: bool) -> None:
        progress = self._progress
        progress.crashes_per_job[job_id] += 1
        crash = Crash(
            job_id=job_id,
            kind=kind,
            point=point,
            caller=caller_name(),
            at=_now(),
            explicit=explicit,
        )
        progress.crashes.append(crash)
        error = WorkerCrashed(point)
        life = current().life
        if life is not None and life.killed is None:
            life.killed, life.error = crash, error
        raise error


@dataclass(eq=False)
class WorkerLife:
    """One call of a worker into the candidate's code, seen as one life of its process: a crash
    inside ends it, and whatever the code still does in that call is done by a dead worker."""

    killed: Crash | None = None
    #: The crash as raised: its traceback shows where the candidate's code caught it.
    error: WorkerCrashed | None = None
    #: What the worker did after its crash, when (loop time): (at, "wrote to the database").
    afterlife: list[tuple[float, str]] = field(default_factory=list)


@contextmanager
def use_crash_plan(plan: CrashPlan | None) -> Iterator[CrashPlan | None]:
    """Make ``plan`` the active crash plan for this task and the tasks it spawns."""
    with scoped(crash_plan=plan):
        yield plan


def active_crash_plan() -> CrashPlan | None:
    return current().crash_plan


@contextmanager
def worker_life() -> Iterator[WorkerLife]:
    """Treat the block (one call of the candidate's code) as one life of the calling worker.

    Only the grader's driver opens one, around a single call and nothing of its own: the runner
    restarts a crashed worker in the same task under the same name, so outside a life a write
    after a crash cannot be told from a restarted worker's."""
    life = WorkerLife()
    with scoped(life=life):
        yield life


def _note_afterlife(deed: str) -> None:
    life = current().life
    if life is not None and life.killed is not None:
        life.afterlife.append((_now(), deed))


def check_before_write(sql: str = "") -> None:
    """Called by the database layer before each INSERT/UPDATE/DELETE; may raise WorkerCrashed."""
    _note_afterlife("wrote to the database")
    scope = current()
    plan, job_id = scope.crash_plan, scope.job_id
    if plan is None or job_id is None:
        return
    plan._before_write(job_id)


def check_after_effect(service: str, effect: str | None = None) -> None:
    """Called by a fake service right after an effect was applied; may raise WorkerCrashed.

    ``effect`` completes the sentence "after <service> ... for job <id>", e.g.
    ``"delivered message <id> to a@example.com"``.
    """
    _note_afterlife(f"{service} {effect}" if effect else f"had {service} take effect")
    scope = current()
    plan, job_id = scope.crash_plan, scope.job_id
    if plan is None or job_id is None:
        return
    plan._after_effect(job_id, service, effect)


def _now() -> float:
    # Loop time when there is a loop (it is what the ledger uses), the same clock otherwise.
    try:
        return asyncio.get_running_loop().time()
    except RuntimeError:
        return time.monotonic()


# Crash injection registers itself with the database layer, which knows nothing of crashes.
Database.before_write.append(check_before_write)
