"""Building a run's record from a finished run (``build_record``): besides the board over time
and the re-counted totals, the measured details an explanation quotes (``facts``: the APIs'
latency, the sends, the calls made inside a transaction, the duplicates, the errors, the crashes)
and the histories of the jobs that show the flaw, ranked by the drill's diagnosis (``telling``).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from harness.world.history import History
from harness.world.ledger import Call
from harness.world.metrics import percentile

from .diagnosis import JobSeen
from .record import CrashEvent, ErrorEvent, RunRecord
from .snapshot import Snapshot

if TYPE_CHECKING:
    from .measure import RunResult

__all__ = ["build_record"]

#: Job histories kept per run: enough to show the pattern, small enough to read.
_JOBS_KEPT = 12
_SUCCEEDED = ("ok", "replayed")


def build_record(
    result: RunResult,
    *,
    id: str,
    timeline: list[Snapshot],
    errors: list[ErrorEvent],
    crashes: list[CrashEvent],
    started: float,
    grace: float | None,
    telling: Callable[[JobSeen], tuple[float, str]],
    given_up_at: dict[int, float] | None = None,
    crashed: dict[int, dict[str, Any]] | None = None,
) -> RunRecord:
    """The record of ``result``; ``started`` is the run's start on the loop's clock (the
    ledger's), ``errors`` what reached the runner, ``crashes`` the workers that died (and
    ``given_up_at`` when the recovery failed a job, in seconds since the start, and ``crashed``
    how the run left the jobs that killed a worker); ``telling`` ranks the jobs whose histories
    are kept."""
    deployment = result.incident.deployment_for(result.variant.key)
    facts = _facts(result, errors, crashes, crashed or {})
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
            "restart_s": deployment.restart,
            "count_recoveries": deployment.count_recoveries,
        },
        timeline=timeline or [result.snapshot],
        totals=result.totals.as_dict(),
        drained=result.report.drained,
        aborted=result.report.aborted,
        facts=facts,
        jobs=_histories(result, errors, crashes, started, telling, given_up_at or {}),
    )


def _facts(
    result: RunResult,
    errors: list[ErrorEvent],
    crashes: list[CrashEvent],
    crashed: dict[int, dict[str, Any]],
) -> dict[str, Any]:
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
        "crashes": _crashes(result, crashes, crashed),
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


def _crashes(
    result: RunResult, crashes: list[CrashEvent], rows: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """The workers that died mid-job: in all, and of each job that killed any (most first), how
    often, when, at which step, how often the recovery returned it, whether it gave up, and the
    job's row as the run left it (status, attempts, last_error)."""
    by_job: dict[int, list[CrashEvent]] = defaultdict(list)
    for crash in crashes:
        by_job[crash.job_id].append(crash)
    recovered = Counter(job_id for job_id, _ in result.report.recovered)
    given_up = {job_id for job_id, _ in result.report.given_up}
    return {
        "count": len(crashes),
        "workers": len({crash.worker for crash in crashes}),
        "jobs": [
            {
                "job_id": job_id,
                "crashes": len(events),
                "workers": len({crash.worker for crash in events}),
                "steps": sorted({crash.step for crash in events}),
                "at": [crash.at for crash in events],
                "message": events[0].message,
                "recovered": recovered[job_id],
                "given_up": job_id in given_up,
                "row": rows.get(job_id, {}),
            }
            for job_id, events in sorted(by_job.items(), key=lambda item: -len(item[1]))
        ],
    }


# -- the offending jobs ------------------------------------------------------------------------


def _histories(
    result: RunResult,
    errors: list[ErrorEvent],
    crashes: list[CrashEvent],
    started: float,
    telling: Callable[[JobSeen], tuple[float, str]],
    given_up_at: dict[int, float],
) -> list[dict[str, Any]]:
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
    died: dict[int, list[CrashEvent]] = defaultdict(list)
    for crash in crashes:
        died[crash.job_id].append(crash)

    def seen(job_id: int) -> JobSeen:
        inside = [c for c in calls[job_id] if c.in_transaction]
        return JobSeen(
            copies=copies[job_id],
            calls_in_transaction=len(inside),
            seconds_in_transaction=sum(c.duration for c in inside),
            failures=tuple(e.type for e in failures[job_id]),
            recoveries=len(recoveries[job_id]),
            crashes=len(died[job_id]),
            given_up=job_id in given_up_at,
        )

    whys = {
        job: telling(seen(job)) for job in set(calls) | set(recoveries) | set(failures) | set(died)
    }
    ranked = sorted(whys, key=lambda job: (-whys[job][0], job))
    kept = [job for job in ranked if whys[job][0] > 0][:_JOBS_KEPT]
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
        events += [
            {"at": crash.at, "worker": crash.worker, "kind": "crash",
             "what": f"died in its {crash.step} step: {crash.message}", "jobs": [job_id],
             "site": crash.site}
            for crash in died[job_id]
        ]  # fmt: skip
        if job_id in given_up_at:
            events.append(
                {"at": given_up_at[job_id], "worker": "harness", "kind": "recovery",
                 "what": f"lease expired: job {job_id} failed, its workers having died "
                 f"{len(died[job_id])} times", "jobs": [job_id], "site": None}
            )  # fmt: skip
        events.sort(key=lambda event: event["at"])
        email = next((c.args.get("to") for c in calls[job_id] if c.operation == "send_email"), None)
        histories.append(
            {
                "job_id": job_id,
                "email": email,
                "why": whys[job_id][1],
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
