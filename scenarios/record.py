"""A run's record: everything a drill measured, kept so that the debrief quotes the run watched.

``--explain``, ``--fixed``, ``--replay`` and the debrief after an answer all read a
``RunRecord`` instead of running again, so that every number they quote is one the candidate saw
on the board: the board over time (``timeline``, one ``Snapshot`` per tick), the totals
re-counted from the database and the ledger, the measured details the explanation quotes
(``facts``, taken from the ledger and the runner when the run ended) and the histories of the
jobs that show the flaw (``jobs``); ``recording`` builds one from a finished run. ``store`` keeps
records under ``.kata/`` (``KATA_HOME``).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from typing import Any

from .incident import Load
from .snapshot import Snapshot

__all__ = ["FORMAT", "CrashEvent", "ErrorEvent", "RunRecord", "new_id"]

#: The version of the record's layout; a record of another version is not read.
FORMAT = 1


@dataclass(frozen=True)
class ErrorEvent:
    """An exception that reached the runner, when and where (for the jobs' histories)."""

    at: float  # seconds since the run started
    worker: str
    job_id: int | None
    where: str  # claim_next_job, process_job, heartbeat, job re-read
    type: str
    message: str


@dataclass(frozen=True)
class CrashEvent:
    """A worker's process that died in the middle of a job: when, whose, at which step, why."""

    at: float  # seconds since the run started
    worker: str
    job_id: int
    step: str
    message: str
    #: The line of the worker's code it died at (``file.py:12 in name()``), when known.
    site: str | None = None


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
            "workers_died": s.crashes,
            "most_crashed": dataclasses.asdict(s.most_crashed) if s.most_crashed else None,
            "given_up": s.given_up,
            "workers_down_avg": round(s.states_avg["stopped"], 2),
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


# -- ids ----------------------------------------------------------------------------------------


def new_id(incident: int, variant: str) -> str:
    """A run id, ``<incident>-<date>-<time to the millisecond>-<variant>``: sorting ids sorts
    runs (``store`` relies on it)."""
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f"{int(now * 1000) % 1000:03d}"
    return f"{incident}-{stamp}-{variant}"
