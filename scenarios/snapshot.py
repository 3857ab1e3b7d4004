"""What the dashboard shows, as plain data, measured from the run while it runs.

``Observer.take()`` reads the sources a real on-call engineer would have - the database's job
counts (sampled by the runner's monitor), the workers' states, the statements and API calls
under way, the pool's meter, the open transactions, the API ledger - and returns a frozen
``Snapshot``. The dashboard draws snapshots; it never computes a figure itself.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.sql.database import Database
from harness.sql.pool import PoolStats
from harness.worker.runner import RunnerConfig
from harness.world.ledger import ViolationKind
from harness.world.metrics import RunMetrics, Sample, percentile
from harness.world.services import Services

__all__ = [
    "API_OPERATIONS",
    "LOCK_WAIT",
    "RECENT",
    "STATES",
    "JobCrashes",
    "Observer",
    "Snapshot",
    "WorkerView",
]

#: A statement under way for longer than this is waiting on a lock (or on SQLite's write lock):
#: the statements themselves take a millisecond or two.
LOCK_WAIT = 0.05

STATES = ("waiting on a lock", "in an API call", "claiming", "processing", "idle", "stopped")

#: The API calls one job makes, in workflow order (the "API time per job" adds them up).
API_OPERATIONS = ("send_email", "get_reply", "analyze_sentiment", "route_customer")

_SUCCEEDED = ("ok", "replayed")
#: Seconds of the "now" throughput window.
RECENT = 5.0


class CrashSeen(Protocol):
    """A worker that died, as the observer needs it: the job it was running."""

    @property
    def job_id(self) -> int: ...


@dataclass(frozen=True)
class WorkerView:
    name: str
    state: str  # one of STATES
    detail: str = ""
    #: Seconds its statement has been waiting on a lock (when ``state`` says so).
    waited: float = 0.0


@dataclass(frozen=True)
class JobCrashes:
    """One job and the workers it took down: how many died running it, how often the lease
    recovery put it back in the queue, whether the recovery gave up on it (failed it)."""

    job_id: int
    crashes: int
    recoveries: int
    given_up: bool = False


@dataclass(frozen=True, kw_only=True)
class Snapshot:
    """The state of one run at one moment; the last one is the run's result."""

    scenario: int
    title: str
    variant: str
    database: str
    elapsed: float
    duration: float
    finished: bool
    workers: int
    jobs: int
    lease: float
    heartbeat: bool
    counts: dict[str, int]
    throughput_now: float
    throughput_avg: float
    series: list[float]
    api_seconds_per_job: float | None
    capacity: float | None  # jobs/min that the workers could do if API time were all they spent
    latency: dict[str, dict[str, float]]  # "claim", each step, "all steps" -> n, p50, p95, p99
    worker_views: list[WorkerView]
    states: dict[str, int]
    states_avg: dict[str, float]  # time-averaged over the run
    pool: PoolStats
    pool_saturated_share: float  # share of samples with every connection in use
    pool_peak_waiting: int
    transactions_open: int
    oldest_transaction: float
    oldest_transaction_max: float
    round_trips: int
    api_calls: dict[str, int]  # by operation
    api_errors: dict[str, int]  # by exception type
    api_in_flight: int
    calls_in_transaction: int
    delivered: int
    duplicate_copies: int  # deliveries beyond the first per recipient
    duplicated_recipients: int  # recipients who got more than one
    recoveries: int
    worker_errors: dict[str, int]  # exceptions the solution raised, by type
    #: Errors the runner's own database calls for the workers met and retried (a heartbeat
    #: renewing a claim, the re-read of a job between two steps), by type: they share the
    #: workers' pool, so its PoolTimeouts are the workers' plus these.
    harness_errors: dict[str, int] = field(default_factory=dict)
    #: Workers whose process died in the middle of a job, whatever killed them.
    crashes: int = 0
    #: The job that killed the most of them (None: no worker died).
    most_crashed: JobCrashes | None = None
    #: Jobs the counting recovery failed instead of returning them to the queue.
    given_up: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def finished_jobs(self) -> int:
        return self.counts.get("completed", 0) + self.counts.get("failed", 0)

    @property
    def pool_timeouts(self) -> int:
        return self.pool.timeouts

    @property
    def callers_bound(self) -> int:
        """How many callers can want a pooled connection at once: each worker, and each
        worker's heartbeat while it holds a job (the runner's other statements have a pool of
        their own)."""
        return self.workers * (2 if self.heartbeat else 1)

    def as_dict(self) -> dict[str, Any]:
        """Plain data for a run's record (``from_dict`` reads it back)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Snapshot:
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in fields}
        values["pool"] = PoolStats(**data["pool"])
        values["worker_views"] = [WorkerView(**view) for view in data["worker_views"]]
        if data.get("most_crashed"):
            values["most_crashed"] = JobCrashes(**data["most_crashed"])
        return cls(**values)


class Observer:
    """Takes snapshots of one run. Cheap enough for several a second: the ledger is read
    incrementally, and nothing here touches the database."""

    def __init__(
        self,
        *,
        scenario: int,
        title: str,
        variant: str,
        database: Database,
        services: Services,
        metrics: RunMetrics,
        config: RunnerConfig,
        jobs: int,
        duration: float,
        harness_errors: Mapping[str, int] | None = None,
        crashes: Sequence[CrashSeen] = (),
        given_up: Sequence[tuple[int, str | None]] = (),
    ) -> None:
        self.scenario, self.title, self.variant = scenario, title, variant
        self._harness_errors = harness_errors if harness_errors is not None else {}
        self._crashes, self._given_up = crashes, given_up
        self.database, self.services, self.metrics = database, services, metrics
        self.config, self.jobs, self.duration = config, jobs, duration
        self._workers = [f"worker-{i + 1}" for i in range(config.workers)]
        self._seen_calls = 0
        self._calls: Counter[str] = Counter()
        self._errors: Counter[str] = Counter()
        self._api_seconds: defaultdict[str, float] = defaultdict(float)
        self._api_succeeded: Counter[str] = Counter()
        self._seen_deliveries = 0
        self._deliveries: Counter[str] = Counter()
        self._samples = 0
        self._state_sums: Counter[str] = Counter()
        self._saturated = 0
        self._peak_waiting = 0
        self._oldest_max = 0.0
        self._last_views: list[WorkerView] = []

    def take(self, *, final: bool = False) -> Snapshot:
        """The run now. ``final`` (after the runner stopped) keeps the workers as last seen
        alive and adds nothing to the time averages."""
        self._read_ledger()
        pool = self.database.pool_stats()
        oldest = max((tx.age() for tx in list(self.database.open_transactions)), default=0.0)
        # After the stop, the workers only finish the calls they were in: keep the board as it
        # was at the stop, and keep the time averages to the run itself.
        stopped = final or self.metrics.elapsed() > self.duration
        if stopped and self._last_views:
            views = self._last_views
        else:
            views = [self._worker_view(name) for name in self._workers]
            self._last_views = views
            self._samples += 1
            self._state_sums.update(view.state for view in views)
            self._saturated += pool.in_use >= pool.max_size
            self._peak_waiting = max(self._peak_waiting, pool.waiting)
            self._oldest_max = max(self._oldest_max, oldest)
        latest = self.metrics.latest
        counts = dict(latest.counts) if latest else {}
        per_job = self._api_seconds_per_job()
        recent, average = self._rates(final)
        return Snapshot(
            scenario=self.scenario,
            title=self.title,
            variant=self.variant,
            database=self.database.config.describe().split(" schema ")[0],
            elapsed=self.metrics.elapsed(),
            duration=self.duration,
            finished=final,
            workers=self.config.workers,
            jobs=self.jobs,
            lease=self.config.lease,
            heartbeat=self.config.heartbeat,
            counts={s: counts.get(s, 0) for s in ("pending", "running", "completed", "failed")},
            throughput_now=recent,
            throughput_avg=average,
            series=self.metrics.throughput_series(30),
            api_seconds_per_job=per_job,
            capacity=self.config.workers * 60.0 / per_job if per_job else None,
            latency=self._latency(),
            worker_views=views,
            states={state: sum(v.state == state for v in views) for state in STATES},
            states_avg={
                state: self._state_sums[state] / self._samples if self._samples else 0.0
                for state in STATES
            },
            pool=pool,
            pool_saturated_share=self._saturated / self._samples if self._samples else 0.0,
            pool_peak_waiting=self._peak_waiting,
            transactions_open=len(self.database.open_transactions),
            oldest_transaction=oldest,
            oldest_transaction_max=max(self._oldest_max, oldest),
            round_trips=self.database.round_trips.count,
            api_calls=dict(self._calls),
            api_errors=dict(self._errors),
            api_in_flight=len(self.services.in_flight),
            calls_in_transaction=len(
                self.services.ledger.violations_of(ViolationKind.CALL_IN_TRANSACTION)
            ),
            delivered=sum(self._deliveries.values()),
            duplicate_copies=sum(n - 1 for n in self._deliveries.values() if n > 1),
            duplicated_recipients=sum(1 for n in self._deliveries.values() if n > 1),
            recoveries=self.metrics.recoveries,
            worker_errors=dict(self.metrics.candidate_errors),
            harness_errors=dict(self._harness_errors),
            crashes=len(self._crashes),
            most_crashed=self._most_crashed(),
            given_up=len(self._given_up),
        )

    # -- sources -----------------------------------------------------------------------------

    def _read_ledger(self) -> None:
        calls = self.services.ledger.calls
        for call in calls[self._seen_calls :]:
            self._calls[call.operation] += 1
            if call.error is not None:
                self._errors[call.error] += 1
            if call.outcome in _SUCCEEDED:
                self._api_seconds[call.operation] += call.duration
                self._api_succeeded[call.operation] += 1
        self._seen_calls = len(calls)
        deliveries = self.services.ledger.deliveries
        for delivery in deliveries[self._seen_deliveries :]:
            self._deliveries[delivery.to] += 1
        self._seen_deliveries = len(deliveries)

    def _most_crashed(self) -> JobCrashes | None:
        by_job = Counter(crash.job_id for crash in list(self._crashes))
        if not by_job:
            return None
        job_id, crashes = by_job.most_common(1)[0]
        return JobCrashes(
            job_id=job_id,
            crashes=crashes,
            recoveries=sum(r.job_id == job_id for r in self.services.ledger.recoveries),
            given_up=any(given == job_id for given, _ in list(self._given_up)),
        )

    def _rates(self, final: bool) -> tuple[float, float]:
        """Jobs finished per minute over the last ``RECENT`` seconds and since the start, up to
        the latest sample - up to the stop for a final snapshot: the runner's last sample, taken
        after the workers finished the calls they were in, counts those jobs but must not
        stretch the window."""
        samples = self.metrics.samples
        if final and len(samples) >= 2:
            samples = samples[:-1]
        if not samples or samples[-1].at <= 0:
            return 0.0, 0.0
        last = samples[-1]
        first = next((s for s in samples if s.at >= last.at - RECENT), samples[0])
        recent = (
            60.0 * (_finished(last) - _finished(first)) / (last.at - first.at)
            if last.at > first.at
            else 0.0
        )
        return recent, 60.0 * _finished(last) / last.at

    def _api_seconds_per_job(self) -> float | None:
        if not all(self._api_succeeded[op] for op in API_OPERATIONS):
            return None
        return sum(self._api_seconds[op] / self._api_succeeded[op] for op in API_OPERATIONS)

    def _worker_view(self, name: str) -> WorkerView:
        operation = self.services.in_flight.get(name)
        if operation is not None:
            return WorkerView(name, "in an API call", operation)
        statement = self.database.in_flight.get(name)
        if statement is not None:
            sql, started = statement
            waited = time.monotonic() - started
            if waited > LOCK_WAIT:
                return WorkerView(
                    name, "waiting on a lock", f"{_verb(sql)} {waited:.1f}s", waited=waited
                )
        state = self.metrics.worker_state.get(name, "idle")
        if state.startswith("processing"):
            return WorkerView(name, "processing", state.removeprefix("processing").strip())
        if state in ("claiming", "idle"):
            return WorkerView(name, state)
        return WorkerView(name, "stopped", state)

    def _latency(self) -> dict[str, dict[str, float]]:
        series = {"claim": self.metrics.claim_seconds}
        series.update(
            (step, self.metrics.step_seconds[step])
            for step in ("send_email", "analyze", "take_action")
            if step in self.metrics.step_seconds
        )
        series["all steps"] = [v for values in self.metrics.step_seconds.values() for v in values]
        return {
            name: {
                "n": float(len(values)),
                "p50": percentile(values, 50),
                "p95": percentile(values, 95),
                "p99": percentile(values, 99),
            }
            for name, values in series.items()
        }


def _finished(sample: Sample) -> int:
    return sample.counts.get("completed", 0) + sample.counts.get("failed", 0)


def _verb(sql: str) -> str:
    words = sql.split()
    if not words:
        return "?"
    if words[0].upper() == "BEGIN" and len(words) > 1:
        return f"BEGIN {words[1].upper()}"
    return words[0].upper()
