"""A run's record: everything a drill measured, kept so that the debrief quotes the run watched.

``--explain``, ``--fixed``, ``--replay`` and the debrief after an answer all read a
``RunRecord`` instead of running again, so that every number they quote is one the candidate saw
on the board: the board over time (``timeline``, one ``Snapshot`` per tick), the totals
re-counted from the database and the ledger, the measured details the explanation quotes
(``facts``, taken from the ledger and the runner when the run ended) and the histories of the
jobs that show the flaw (``jobs``). ``store`` keeps records under ``.kata/`` (``KATA_HOME``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from harness.world.history import History
from harness.world.ledger import Call
from harness.world.metrics import percentile

from .incident import Load
from .snapshot import Snapshot

if TYPE_CHECKING:
    from .measure import RunResult

__all__ = ["FORMAT", "ErrorEvent", "RunRecord", "build_record", "new_id"]

#: The version of the record's layout; a record of another version is not read.
FORMAT = 1
#: Job histories kept per run: enough to show the pattern, small enough to read.
_JOBS_KEPT = 12
_SUCCEEDED = ("ok", "replayed")


@dataclass(frozen=True)
class ErrorEvent:
    """An exception that reached the runner, when and where (for the jobs' histories)."""

    at: float  # seconds since the run started
    worker: str
    job_id: int | None
    where: str  # claim_next_job, process_job, heartbeat, job re-read
    type: str
    message: str


@dataclass(kw_only=True)
class RunRecord:
    """One measured run, as it is shown and kept."""

    id: str
    incident: int
    variant: str  # flawed, fixed or solution
    label: str
    solution: str
    dialect: str
    database: str
    load: Load
    grace: float | None
    started: str  # local wall time, ISO 8601
    deployment: dict[str, Any]
    timeline: list[Snapshot]
    totals: dict[str, Any]
    drained: bool
    aborted: str | None
    facts: dict[str, Any]
    jobs: list[dict[str, Any]]
    #: For a fixed run: the id of the watched run it is compared with.
    fixed_of: str | None = None
    answer: dict[str, Any] | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def snapshot(self) -> Snapshot:
        """The last snapshot: what the board showed when the run ended."""
        return self.timeline[-1]

    @property
    def jobs_per_minute(self) -> float:
        return self.snapshot.throughput_avg

    def figures(self) -> dict[str, Any]:
        """The headline numbers, for before/after tables, signatures and ``--json``."""
        s = self.snapshot
        latency = s.latency
        return {
            "jobs_per_min": round(s.throughput_avg, 1),
            "capacity_jobs_per_min": round(s.capacity, 1) if s.capacity else None,
            "api_seconds_per_job": round(s.api_seconds_per_job, 4)
            if s.api_seconds_per_job
            else None,
            **s.counts,
            "delivered": s.delivered,
            "duplicate_copies": s.duplicate_copies,
            "duplicated_recipients": s.duplicated_recipients,
            "pool_timeouts": s.pool.timeouts,
            "pool_max_wait_s": round(s.pool.max_wait, 3),
            "pool_saturated_share": round(s.pool_saturated_share, 3),
            "pool_peak_waiting": s.pool_peak_waiting,
            "p99_claim_s": round(latency["claim"]["p99"], 4),
            "p99_step_s": round(latency["all steps"]["p99"], 4),
            **{
                f"p99_{step}_s": round(latency[step]["p99"], 4)
                for step in ("send_email", "analyze", "take_action")
                if step in latency
            },
            "calls_in_transaction": s.calls_in_transaction,
            "recoveries": s.recoveries,
            "workers_waiting_on_lock_avg": round(s.states_avg["waiting on a lock"], 2),
            "oldest_transaction_max_s": round(s.oldest_transaction_max, 3),
            "worker_errors": dict(s.worker_errors),
            "harness_errors": dict(s.harness_errors),
            "lease_s": s.lease,
            "heartbeat": s.heartbeat,
        }

    def as_dict(self) -> dict[str, Any]:
        """The run as ``--json`` prints it."""
        s = self.snapshot
        dashboard = {
            **s.counts,
            "total": s.jobs,
            "delivered": s.delivered,
            "duplicate_copies": s.duplicate_copies,
            "duplicated_recipients": s.duplicated_recipients,
            "api_calls": sum(s.api_calls.values()),
        }
        return {
            "id": self.id,
            "variant": self.variant,
            "label": self.label,
            "solution": self.solution,
            "dialect": self.dialect,
            "database": s.database,
            "started": self.started,
            "elapsed_s": round(s.elapsed, 3),
            "drained": self.drained,
            "aborted": self.aborted,
            "fixed_of": self.fixed_of,
            "load": _load_dict(self.load),
            "grace_s": self.grace,
            "deployment": self.deployment,
            "figures": self.figures(),
            "dashboard": dashboard,
            "database_totals": self.totals,
            "verified": True,  # a mismatch raises TotalsMismatch instead of recording
        }

    # -- storage ----------------------------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "id": self.id,
            "incident": self.incident,
            "variant": self.variant,
            "label": self.label,
            "solution": self.solution,
            "dialect": self.dialect,
            "database": self.database,
            "load": _load_dict(self.load),
            "grace": self.grace,
            "started": self.started,
            "deployment": self.deployment,
            "totals": self.totals,
            "drained": self.drained,
            "aborted": self.aborted,
            "facts": self.facts,
            "jobs": self.jobs,
            "fixed_of": self.fixed_of,
            "answer": self.answer,
            "notes": self.notes,
            "timeline": [snapshot.as_dict() for snapshot in self.timeline],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> RunRecord:
        if data.get("format") != FORMAT:
            raise ValueError(f"a run recorded in format {data.get('format')}, not {FORMAT}")
        load = data["load"]
        return cls(
            id=data["id"],
            incident=int(data["incident"]),
            variant=data["variant"],
            label=data["label"],
            solution=data["solution"],
            dialect=data["dialect"],
            database=data["database"],
            load=Load(
                jobs=load["jobs"],
                workers=load["workers"],
                duration=load["duration_s"],
                seed=load["seed"],
            ),
            grace=data["grace"],
            started=data["started"],
            deployment=data["deployment"],
            timeline=[Snapshot.from_dict(item) for item in data["timeline"]],
            totals=data["totals"],
            drained=data["drained"],
            aborted=data["aborted"],
            facts=data["facts"],
            jobs=data["jobs"],
            fixed_of=data.get("fixed_of"),
            answer=data.get("answer"),
            notes=data.get("notes") or {},
        )


def _load_dict(load: Load) -> dict[str, Any]:
    return {
        "jobs": load.jobs,
        "workers": load.workers,
        "duration_s": load.duration,
        "seed": load.seed,
    }


# -- building a record from a finished run ---------------------------------------------------------


def new_id(incident: int, variant: str) -> str:
    """A run id, ``<incident>-<date>-<time to the millisecond>-<variant>``: sorting ids sorts
    runs (``store`` relies on it)."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"{int(now * 1000) % 1000:03d}"
    return f"{incident}-{stamp}-{variant}"


def build_record(
    result: RunResult,
    *,
    id: str,
    timeline: list[Snapshot],
    errors: list[ErrorEvent],
    started: float,
    grace: float | None,
) -> RunRecord:
    """The record of ``result``; ``started`` is the run's start on the loop's clock (the
    ledger's), ``errors`` what reached the runner."""
    deployment = result.incident.deployment_for(result.variant.key)
    facts = _facts(result, errors, started)
    return RunRecord(
        id=id,
        incident=result.incident.number,
        variant=result.variant.key,
        label=result.variant.label,
        solution=str(result.variant.solution.path),
        dialect=result.dialect,
        database=result.snapshot.database,
        load=result.load,
        grace=grace,
        started=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        deployment={
            "lease_s": result.snapshot.lease,
            "heartbeat": result.snapshot.heartbeat,
            "pool_size": result.snapshot.pool.max_size,
            "pool_timeout_s": deployment.pool_timeout,
            "busy_timeout_s": deployment.busy_timeout,
            "stop_grace_s": deployment.stop_grace if grace is None else grace,
        },
        timeline=timeline or [result.snapshot],
        totals=result.totals.as_dict(),
        drained=result.report.drained,
        aborted=result.report.aborted,
        facts=facts,
        jobs=_histories(result, errors, started),
    )


def _facts(result: RunResult, errors: list[ErrorEvent], started: float) -> dict[str, Any]:
    """The measured details an explanation quotes, beyond the board's own figures."""
    ledger = result.services.ledger
    sends = ledger.calls_for(operation="send_email")
    durations = [c.duration for c in sends]
    lease = result.snapshot.lease
    inside = [c for c in ledger.calls if c.in_transaction]
    return {
        "api": {
            operation: _spread(
                [
                    c.duration
                    for c in ledger.calls_for(operation=operation)
                    if c.outcome in _SUCCEEDED
                ]
            )
            for operation in ("send_email", "get_reply", "analyze_sentiment", "route_customer")
        },
        "sends": {
            **_spread(durations),
            "over_lease": sum(d > lease for d in durations),
            "timeouts_after_delivery": sum(c.outcome == "timeout_after" for c in sends),
            "replayed": sum(c.outcome == "replayed" for c in sends),
            "rate_limited": sum(c.outcome == "rate_limited" for c in sends),
        },
        "in_transaction": {
            "calls": dict(Counter(c.operation for c in inside).most_common()),
            "rate_limited": sum(c.outcome == "rate_limited" for c in inside),
            "seconds": round(sum(c.duration for c in inside), 3),
        },
        "duplicates": _duplicates(result),
        "errors": _error_summary(e for e in errors if e.where in _CODE),
        "harness_errors": _error_summary(e for e in errors if e.where not in _CODE),
        "recovered_jobs": len({job_id for job_id, _ in result.report.recovered}),
    }


_CODE = ("claim_next_job", "process_job")


def _spread(values: list[float]) -> dict[str, float | int]:
    return {
        "n": len(values),
        "p50": round(percentile(values, 50), 4),
        "p99": round(percentile(values, 99), 4),
        "max": round(max(values, default=0.0), 4),
    }


def _error_summary(errors: Iterable[ErrorEvent]) -> list[dict[str, Any]]:
    """Errors by (where, type), most frequent first, with the first one's message."""
    groups: dict[tuple[str, str], list[ErrorEvent]] = defaultdict(list)
    for error in errors:
        groups[(error.where, error.type)].append(error)
    return [
        {"where": where, "type": kind, "count": len(events), "message": events[0].message}
        for (where, kind), events in sorted(groups.items(), key=lambda item: -len(item[1]))
    ]


def _duplicates(result: RunResult) -> dict[str, int]:
    by_recipient = defaultdict(list)
    for delivery in result.services.ledger.deliveries:
        by_recipient[delivery.to].append(delivery)
    duplicated = [ds for ds in by_recipient.values() if len(ds) > 1]
    recovered = {job_id for job_id, _ in result.report.recovered}
    return {
        "recipients": len(duplicated),
        "max_copies": max((len(ds) for ds in duplicated), default=0),
        "one_job": sum(len({d.job_id for d in ds}) == 1 for ds in duplicated),
        "two_workers": sum(len({d.caller for d in ds}) > 1 for ds in duplicated),
        "fresh_keys": sum(len({d.key for d in ds}) == len(ds) for ds in duplicated),
        "after_recovery": sum(any(d.job_id in recovered for d in ds) for ds in duplicated),
    }


# -- the offending jobs ------------------------------------------------------------------------


def _histories(result: RunResult, errors: list[ErrorEvent], started: float) -> list[dict[str, Any]]:
    """What happened to the jobs that show the incident's flaw, in order, most telling first."""
    ledger = result.services.ledger
    owners = _owners(ledger.calls)
    calls: dict[int, list[Call]] = defaultdict(list)
    for call in ledger.calls:
        job_id = call.job_id if call.job_id is not None else owners.get(call.subject)
        if job_id is not None:
            calls[job_id].append(call)
    recoveries: dict[int, list[float]] = defaultdict(list)
    for recovery in ledger.recoveries:
        recoveries[recovery.job_id].append(recovery.at)
    failures: dict[int, list[ErrorEvent]] = defaultdict(list)
    for error in errors:
        if error.job_id is not None:
            failures[error.job_id].append(error)
    copies = Counter(
        d.job_id if d.job_id is not None else owners.get(d.to) for d in ledger.deliveries
    )

    def why(job_id: int) -> tuple[float, str]:
        """How telling a job is for this incident (higher first), and why it was kept."""
        number = result.incident.number
        if number == 2 and copies[job_id] > 1:
            return 100 + copies[job_id], f"its customer got {copies[job_id]} emails"
        inside = [c for c in calls[job_id] if c.in_transaction]
        if number in (1, 3) and inside:
            held = sum(c.duration for c in inside)
            return 10 + held, f"{len(inside)} API call(s) made inside a transaction"
        if failures[job_id]:
            kinds = ", ".join(sorted({e.type for e in failures[job_id]}))
            return 5 + len(failures[job_id]), f"raised {kinds}"
        if recoveries[job_id]:
            return 1 + len(recoveries[job_id]), "handed to another worker after its lease expired"
        return 0, ""

    ranked = sorted(
        (job for job in set(calls) | set(recoveries) | set(failures)),
        key=lambda job: (-why(job)[0], job),
    )
    kept = [job for job in ranked if why(job)[0] > 0][:_JOBS_KEPT]
    histories = []
    for job_id in kept:
        # The grader's timeline of a job (harness.world.history), told as a drill tells it: with how
        # long each call took; and the exceptions that reached the runner.
        timeline = History().timeline(
            [job_id],
            calls=[replace(call, job_id=job_id) for call in calls[job_id]],
            recoveries=[r for r in ledger.recoveries if r.job_id == job_id],
            durations=True,
        )
        events = timeline.to_json(start=started)
        events += [
            {"at": round(error.at, 6), "worker": error.worker, "kind": "error",
             "what": f"{error.where} raised {error.type}", "jobs": [job_id], "site": None}
            for error in failures[job_id]
        ]  # fmt: skip
        events.sort(key=lambda event: event["at"])
        email = next((c.args.get("to") for c in calls[job_id] if c.operation == "send_email"), None)
        histories.append(
            {
                "job_id": job_id,
                "email": email,
                "why": why(job_id)[1],
                "emails_delivered": copies[job_id],
                "events": events,
            }
        )
    return histories


def _owners(calls: list[Call]) -> dict[str, int]:
    """Which job each subject (an address, a message id) belongs to, from the calls made for a
    job: a call made inside claim_next_job (incident 1 sends the email there) is made before
    the worker knows its job, so the ledger has no job for it."""
    owners: dict[str, int] = {}
    for call in calls:
        if call.job_id is not None:
            owners.setdefault(call.subject, call.job_id)
    for call in calls:  # the message id a send returned belongs to the send's job
        if call.operation == "send_email" and call.result and call.subject in owners:
            owners.setdefault(call.result, owners[call.subject])
    return owners
