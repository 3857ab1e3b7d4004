"""What an incident drill is: production code with a flaw, its fix, and the load that exposes it.

An incident module (``slow_throughput``, ``duplicate_emails``, ``pool_exhaustion``,
``crash_loop``) is the campaign worker exactly as production runs it, followed by the fix; it
ends by declaring its ``INCIDENT``: the pager message, how production is deployed (lease,
heartbeat, how the queue recovers a dead worker's job, how long a crashed worker takes to come
back, pool, how the external APIs behave), what in the world is out of the ordinary (a
``Poison`` customer) and the two solutions. The drill runs a ``Load`` against one of its
``Variant``s and measures everything it shows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from harness.worker.runner import RunnerConfig
from harness.worker.solutions import Solution
from harness.world.faults import FaultPlan

__all__ = [
    "DEFAULT_DURATION",
    "DEFAULT_JOBS",
    "DEFAULT_WORKERS",
    "STOP_GRACE",
    "Deployment",
    "Incident",
    "Load",
    "Poison",
    "Variant",
    "solution_of",
]

DEFAULT_JOBS = 5000
DEFAULT_WORKERS = 20
DEFAULT_DURATION = 30.0
DEFAULT_SEED = 1
#: Seconds the workers get, once told to stop, to finish the call they are in before they are
#: cancelled (a worker that is told to stop takes no new job and starts no new step).
STOP_GRACE = 5.0
#: Our own variants are measured, not policed: an error they raise (a PoolTimeout, say) is part
#: of the incident, so the runner must not stop the run after a few of them.
_UNLIMITED_ERRORS = 1_000_000


@dataclass(frozen=True, kw_only=True)
class Load:
    """How much work a run gets, and for how long. The same load runs before and after."""

    jobs: int = DEFAULT_JOBS
    workers: int = DEFAULT_WORKERS
    duration: float = DEFAULT_DURATION
    seed: int = DEFAULT_SEED

    def __post_init__(self) -> None:
        if self.jobs < 1 or self.workers < 1:
            raise ValueError("a load needs at least one job and one worker")
        if self.duration <= 0:
            raise ValueError(f"duration must be positive, not {self.duration}")


@dataclass(frozen=True, kw_only=True)
class Deployment:
    """How production runs its workers: what an on-call engineer finds in the config."""

    #: Seconds after which a running job whose claim was not renewed goes back to the queue.
    lease: float = 2.0
    #: Whether a live worker renews its claim while it works.
    heartbeat: bool = True
    #: Pooled connections as a function of the number of workers.
    pool_size: Callable[[int], int] = lambda workers: workers + 5
    #: Seconds a caller waits for a pooled connection before ``PoolTimeout``.
    pool_timeout: float = 30.0
    #: Seconds SQLite waits for its write lock before "database is locked" (None: the default).
    busy_timeout: float | None = None
    #: How the external APIs behave (latency and faults), from the run's seed.
    apis: Callable[[int], FaultPlan] = lambda seed: FaultPlan(seed=seed)
    #: Seconds workers told to stop get to finish the calls they are in before they are
    #: cancelled (what Kubernetes calls the termination grace period).
    stop_grace: float = STOP_GRACE
    #: Seconds a worker whose process died takes to take work again, doubled at each of its
    #: crashes up to ``restart_cap`` (Kubernetes restarts a crashing pod after a back-off).
    #: 0: at once.
    restart: float = 0.0
    restart_cap: float = 300.0
    #: Whether the queue's recovery counts each expired claim in ``attempts`` and fails a job
    #: after ``MAX_ATTEMPTS`` of them (``harness.sql.queue.RECOVER_COUNTING``), or returns it to
    #: the queue however often its workers die (``RECOVER_EXPIRED``).
    count_recoveries: bool = False

    def restart_after(self, crashes: int) -> float:
        """Seconds before a worker that has crashed ``crashes`` times (1 or more) restarts."""
        return min(self.restart_cap, self.restart * 2 ** (crashes - 1)) if self.restart else 0.0

    def database_options(self, load: Load) -> dict[str, Any]:
        options: dict[str, Any] = {
            "pool_size": self.pool_size(load.workers),
            "pool_timeout": self.pool_timeout,
        }
        if self.busy_timeout is not None:
            options["busy_timeout"] = self.busy_timeout
        return options

    def runner_config(
        self, load: Load, *, police_errors: bool, grace: float | None = None
    ) -> RunnerConfig:
        """The runner for ``load``; ``police_errors`` keeps the runner's stop-on-errors guard
        (for a candidate's code, which may simply not work yet); ``grace`` overrides
        ``stop_grace``."""
        grace = self.stop_grace if grace is None else grace
        extra = {} if police_errors else {"errors_per_job_limit": _UNLIMITED_ERRORS}
        return RunnerConfig(
            workers=load.workers,
            lease=self.lease,
            heartbeat=self.heartbeat,
            deadline=load.duration + grace,
            count_recoveries=self.count_recoveries,
            **extra,
        )


@dataclass(frozen=True, kw_only=True)
class Poison:
    """A customer whose reply kills the worker process that reads it, every time (production's
    native mail parser dies on it). The drill's world (``world``) puts the customer in the
    campaign at ``position`` and ends the life of whichever worker receives the reply."""

    address: str
    #: Where in the campaign's list of customers (0: first).
    position: int = 0
    #: What the dying worker's log says.
    last_words: str = "Segmentation fault (core dumped)"


@dataclass(frozen=True)
class Variant:
    """One solution to run under the incident's load: ``flawed``, ``fixed`` or ``solution``."""

    key: str
    label: str
    solution: Solution

    @property
    def ours(self) -> bool:
        """True for the incident's own code, False for a candidate's solution."""
        return self.key != "solution"


@dataclass(frozen=True, kw_only=True)
class Incident:
    number: int
    slug: str
    title: str
    #: What the pager says: the symptom as reported, never a measured figure. A symptom that
    #: the fix removes (``--fixed`` shows it gone), in the words of the backend that runs.
    page: str
    module: ModuleType
    deployment: Deployment
    flawed: Solution
    fixed: Solution
    #: The page on another backend (by dialect), when its logs say something else.
    pages: dict[str, str] = field(default_factory=dict)
    #: How production runs once fixed, when the fix is also in the configuration (drill 2's
    #: heartbeat); None: the same deployment.
    fixed_deployment: Deployment | None = None
    #: Whether telling the flaw apart needs the fix measured under the same load (throughput is
    #: only "low" next to what the same machine does with the fix).
    needs_baseline: bool = False
    #: A customer whose reply kills its reader, when the incident has one.
    poison: Poison | None = None
    #: Whether the flaw is the reaper's: then ``--solution`` runs the candidate's reaper
    #: (``recover_stalled_jobs``, Task F) in the monitor, in place of production's.
    solution_reaps: bool = False
    #: The smallest load that shows the flaw and the fix apart, for the suite's runs.
    quick: Load = field(default_factory=lambda: Load(jobs=400, workers=20, duration=2.0))

    @property
    def path(self) -> Path:
        return Path(self.module.__file__ or self.slug)

    def page_for(self, dialect: str) -> str:
        return self.pages.get(dialect, self.page)

    def deployment_for(self, key: str) -> Deployment:
        """The deployment a variant runs with: the fixed one for ``fixed``; production's for
        the flawed code and for a candidate's solution."""
        if key == "fixed" and self.fixed_deployment is not None:
            return self.fixed_deployment
        return self.deployment

    def variant(self, key: str, solution: Solution | None = None) -> Variant:
        if key == "flawed":
            return Variant("flawed", "production code", self.flawed)
        if key == "fixed":
            return Variant("fixed", "with the fix", self.fixed)
        if key == "solution" and solution is not None:
            return Variant("solution", f"your {solution.path.name}", solution)
        raise ValueError(f"unknown variant {key!r}")


def solution_of(module: ModuleType, **functions: Callable[..., Any]) -> Solution:
    """A ``Solution`` of the four functions given, from an incident module."""
    return Solution(path=Path(module.__file__ or module.__name__), module=module, **functions)
