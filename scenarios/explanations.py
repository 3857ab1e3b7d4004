"""Why a run went wrong: the root cause, the evidence in this run's record that points to it
(quoting the numbers the board showed), the fix, and the histories of the jobs that show it.

``explain(run, fixed)`` never measures anything itself, so ``--explain`` quotes exactly the run
that was watched.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Any

from harness.world.history import Event, Timeline

from .record import RunRecord
from .signatures import Run, record_of
from .snapshot import Snapshot

__all__ = ["Explanation", "explain", "history_lines"]


@dataclass(frozen=True)
class Explanation:
    root_cause: str
    evidence: list[str]
    fix: str
    #: The histories of a few jobs that show the flaw, as lines.
    jobs: list[str] = field(default_factory=list)
    #: What ``--fixed`` showed, as lines (empty without a fixed run).
    fixed: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, object]:
        return {
            "root_cause": self.root_cause,
            "evidence": self.evidence,
            "fix": self.fix,
            "jobs": self.jobs,
            "fixed": self.fixed,
        }


def explain(run: Run, fixed: Run | None = None) -> Explanation:
    """Root cause, evidence quoted from ``run`` (the watched run) and ``fixed`` (the fix on the
    same load and seed), the fix, and the offending jobs' histories."""
    record = record_of(run)
    after = record_of(fixed) if fixed is not None else None
    explainers = {1: _explain_slow, 2: _explain_duplicates, 3: _explain_pool}
    if record.incident not in explainers:
        raise ValueError(f"no explanation for incident {record.incident}")
    explanation = explainers[record.incident](record, after)
    return replace(explanation, jobs=history_lines(record, limit=2))


def _explain_slow(r: RunRecord, fixed: RunRecord | None) -> Explanation:
    s = r.snapshot
    sqlite = r.dialect == "sqlite"
    evidence = []
    if s.capacity and s.api_seconds_per_job:
        evidence.append(
            f"The APIs are not the limit: a job spends {_s(s.api_seconds_per_job)} in API calls, "
            f"so {s.workers} workers could finish {s.capacity:,.0f} jobs/min; they finished "
            f"{s.throughput_avg:,.0f} jobs/min ({s.throughput_avg / s.capacity:.0%})."
        )
    else:
        evidence.append(
            f"The workers finished {s.throughput_avg:,.0f} jobs/min; no job got through all "
            "its API calls, so what the APIs would allow was not measured."
        )
    evidence.append(
        f"On average {s.states_avg['waiting on a lock']:.1f} of {s.workers} workers were waiting "
        f"on a lock (a statement running > 50 ms), and "
        f"{s.states_avg['in an API call']:.1f} were in an API call."
    )
    claim = s.latency["claim"]
    step = s.latency.get("send_email", {"n": 0, "p50": 0.0})
    step_note = (
        f" (The board's send_email step, p50 {_s(step['p50'])}, is process_job's step: the "
        "email usually went out with the claim, so it has little left to do.)"
        if step["n"]
        else ""
    )
    evidence.append(
        f"claim_next_job took {_s(claim['p50'])} at p50 and {_s(claim['p99'])} at p99 - longer "
        f"than SendGrid's send_email API call itself ({_api(r, 'send_email')}), which the claim "
        f"makes inside its transaction: claims wait for one another.{step_note}"
    )
    inside = r.facts["in_transaction"]["calls"]
    if inside:
        held = (
            f"each holds the write lock for one send: the longest open transaction reached "
            f"{_s(s.oldest_transaction_max)}"
            if sqlite
            else f"a transaction stayed open up to {_s(s.oldest_transaction_max)}, most of it "
            "waiting for the row lock"
        )
        evidence.append(
            f"{_calls(inside)} made while holding a transaction - the email is sent inside the "
            f"claim's transaction; {held}."
        )
    errors = r.facts["errors"]
    deadlocks = sum(
        e["count"]
        for e in errors
        if e["type"] == "DeadlockDetected" and e["where"] == "claim_next_job"
    )
    if s.recoveries:
        if sqlite:
            evidence.append(
                f"The heartbeats queue for the write lock too: {s.recoveries:,} running jobs "
                f"could not renew their claim within the {s.lease:g} s lease and were handed to "
                "a second worker."
            )
        else:
            evidence.append(
                "PostgreSQL keeps the lock on every row a FOR UPDATE waited for, even one it "
                "then skipped, so each claimer also holds the previous job's row while it sends: "
                f"{s.recoveries:,} running jobs could not renew their claim within the "
                f"{s.lease:g} s lease and were handed to a second worker"
                + (f", and {deadlocks:,} claims died as deadlock victims." if deadlocks else ".")
            )
    evidence += _error_lines(r, errors)
    evidence.append(
        f"Not the pool: {s.pool.timeouts:,} PoolTimeouts, and it was full "
        f"{s.pool_saturated_share:.0%} of the time."
    )
    after = []
    if fixed is not None:
        f = fixed.snapshot
        after.append(
            f"With the fix, the same load and seed ran at {f.throughput_avg:,.0f} jobs/min "
            f"({_times(f.throughput_avg, s.throughput_avg)}), claim p99 "
            f"{_s(f.latency['claim']['p99'])} (was {_s(claim['p99'])}), "
            f"{f.states_avg['waiting on a lock']:.1f} workers waiting on a lock on average."
        )
    opens = (
        "opens a transaction with BEGIN IMMEDIATE, which takes SQLite's single write lock,"
        if sqlite
        else "opens a transaction, locks the oldest pending job's row (SELECT ... FOR UPDATE)"
    )
    queue = (
        "Every other worker's claim - and every other write: heartbeats, step updates - waits "
        "for that lock"
        if sqlite
        else "Every other worker's claim selects the same oldest row and waits for that lock"
    )
    return Explanation(
        root_cause=(
            f"claim_next_job {opens} and sends the job's email before committing. {queue}, so "
            "claims go one at a time, one email send each, whatever the number of workers."
        ),
        evidence=evidence,
        fix=(
            "Claim in one short statement - "
            + (
                "a single UPDATE ... RETURNING, which holds the write lock for milliseconds"
                if sqlite
                else "UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING *, "
                "so claimers pass each other instead of queueing on one row"
            )
            + " - and send the email afterwards in process_job, outside any transaction, with "
            "an idempotency key per job and step (that key, not a lock, prevents a second "
            "email)."
        ),
        fixed=after,
    )


def _explain_duplicates(r: RunRecord, fixed: RunRecord | None) -> Explanation:
    s = r.snapshot
    d = r.facts["duplicates"]
    evidence = [
        f"{s.duplicate_copies:,} duplicate copies went to {s.duplicated_recipients:,} customers"
        + (f" (at most {d['max_copies']} emails to one)." if d["recipients"] else ".")
    ]
    if d["recipients"]:
        evidence.append(
            f"Each of them has one job ({d['one_job']} of {d['recipients']}): the campaign was "
            f"not queued twice. {d['after_recovery']} of them belong to running jobs the lease "
            "recovery took from a worker still sending and handed to another; "
            f"{d['two_workers']} got their copies from two different workers - the first and "
            "the one the job was handed to, not two claims of a pending job."
        )
        evidence.append(
            f"Every copy carried its own idempotency key ({d['fresh_keys']} of "
            f"{d['recipients']} customers): SendGrid could not know the second request was the "
            "same email."
        )
    sends = r.facts["sends"]
    evidence.append(
        f"The lease is {s.lease:g} s with the heartbeat {'on' if s.heartbeat else 'off'}, but "
        f"send_email took {_s(sends['p99'])} at p99 and up to {_s(sends['max'])}; "
        f"{sends['over_lease']:,} sends outlasted the lease. {s.recoveries:,} running jobs were "
        "handed to another worker."
    )
    if sends["timeouts_after_delivery"]:
        evidence.append(
            f"{sends['timeouts_after_delivery']:,} sends timed out after SendGrid had delivered; "
            "each retry with a new key delivered again."
        )
    evidence += _error_lines(r, r.facts["errors"])
    after = []
    if fixed is not None:
        f = fixed.snapshot
        replayed = fixed.facts["sends"]["replayed"]
        after.append(
            f"With the whole fix (a key per job and step; lease {f.lease:g} s, heartbeat "
            f"{'on' if f.heartbeat else 'off'}) on the same load and seed: "
            f"{f.duplicate_copies:,} duplicate copies (was {s.duplicate_copies:,}), "
            f"{f.recoveries:,} jobs handed to a second worker (was {s.recoveries:,}), and "
            f"{replayed:,} repeated sends answered with the first email's message id instead of "
            "a new email."
        )
    return Explanation(
        root_cause=(
            "The lease is shorter than the slowest jobs and live workers do not renew it, so "
            "the monitor hands a job that is still being sent to a second worker. That worker "
            "sends again, and because send_email_step makes a new uuid4 idempotency key for "
            "every request, SendGrid treats it as a new email. A retry after a timeout that did "
            "deliver does the same."
        ),
        evidence=evidence,
        fix=(
            "Derive the idempotency key from the job and the step (f'job-{job.id}-send_email'): "
            "the same on every retry and every worker, so a second send returns the first "
            "message id. Then stop handing live jobs out: renew the claim while working "
            "(heartbeat) or make the lease longer than the slowest job."
        ),
        fixed=after,
    )


def _explain_pool(r: RunRecord, fixed: RunRecord | None) -> Explanation:
    s = r.snapshot
    sqlite = r.dialect == "sqlite"
    pool = s.pool
    evidence = [
        _pool_timeouts_line(s)
        + f" The pool of {pool.max_size} was full {s.pool_saturated_share:.0%} of the time, with "
        f"up to {s.pool_peak_waiting} callers waiting at once ({_callers(s)}).",
    ]
    evidence += _error_lines(r, r.facts["errors"])
    inside = r.facts["in_transaction"]
    if inside["calls"]:
        evidence.append(
            f"{_calls(inside['calls'])} made while holding a transaction (and its connection"
            + (", and SQLite's write lock" if sqlite else "")
            + f"); {inside['rate_limited']:,} of them were answered 429, and the transaction "
            "stayed open through the retry_after wait. The longest open transaction reached "
            f"{_s(s.oldest_transaction_max)}."
        )
    send_step = s.latency.get("send_email", {"p50": 0.0, "p99": 0.0, "n": 0})
    if send_step["n"]:
        evidence.append(
            f"The send_email step took {_s(send_step['p50'])} at p50 and "
            f"{_s(send_step['p99'])} at p99, against {_api(r, 'send_email')} for SendGrid "
            "itself: the rest is retry_after waits and waiting for a connection"
            + (" or the write lock." if sqlite else ".")
        )
    claim = s.latency["claim"]
    evidence.append(
        f"claim_next_job - one short UPDATE, no API call - took {_s(claim['p99'])} at p99 "
        f"(p50 {_s(claim['p50'])}): it waits for a connection like everyone else."
    )
    evidence.append(
        f"Not a leak: once the workers stopped, {pool.in_use} connections were still in use."
    )
    after = []
    if fixed is not None:
        f = fixed.snapshot
        fixed_send = f.latency.get("send_email", {"p99": 0.0, "n": 0})
        after.append(
            f"With the fix, the same {f.pool.max_size} connections, load and seed: "
            f"{f.pool.timeouts:,} PoolTimeouts (was {pool.timeouts:,}), claim p99 "
            f"{_s(f.latency['claim']['p99'])} (was {_s(claim['p99'])}), pool full "
            f"{f.pool_saturated_share:.0%} of the time, longest wait for a connection "
            f"{_s(f.pool.max_wait)} - so the pool was not too small."
        )
        if fixed_send["n"]:
            after.append(
                f"The send_email step's own p99 ({_s(fixed_send['p99'])} with the fix) is "
                "SendGrid's 429s and their retry_after waits: slow, but now without holding a "
                "connection, so nobody else waits for it."
            )
    return Explanation(
        root_cause=(
            "send_email_step opens a transaction ("
            + ("BEGIN IMMEDIATE: SQLite's write lock" if sqlite else "locking the job's row")
            + ") and calls SendGrid inside it. The transaction's pooled connection is held, "
            "doing nothing, for the whole network call and its retries; with twenty workers "
            f"and {pool.max_size} connections, the launch burst leaves callers waiting longer "
            f"than the {r.deployment['pool_timeout_s']:g} s pool timeout."
            + (
                " On SQLite the transaction also holds the database's write lock, so every "
                "other write waits for it, up to the busy timeout."
                if sqlite
                else ""
            )
        ),
        evidence=evidence,
        fix=(
            "Call the API outside any transaction: send with the job's stable idempotency key "
            "(which is what really makes it exactly once), then record the message id in one "
            "short UPDATE. Don't grow the pool to hide it: every extra connection would sit idle "
            "during sends too."
        ),
        fixed=after,
    )


# -- the parts the explanations share --------------------------------------------------------------


def _pool_timeouts_line(s: Snapshot) -> str:
    """The pool's PoolTimeouts, split by who met them; the parts add up to the pool's count."""
    total = s.pool.timeouts
    raised = s.worker_errors.get("PoolTimeout", 0)
    retried = s.harness_errors.get("PoolTimeout", 0)
    handled = total - raised - retried
    parts = [f"{raised:,} reached claim_next_job or process_job as errors"]
    if retried:
        parts.append(f"{retried:,} hit a heartbeat or the re-read of a job, which retry")
    if handled > 0:
        parts.append(f"{handled:,} were caught inside the code")
    return (
        f"{total:,} PoolTimeouts after waiting {_s(s.pool.max_wait)} at most: "
        + (", ".join(parts[:-1]) + " and " + parts[-1] if len(parts) > 1 else parts[0])
        + "."
    )


def _callers(s: Snapshot) -> str:
    if s.heartbeat:
        return (
            f"at most {s.callers_bound} can: {s.workers} workers and, while they hold a job, "
            "their heartbeats"
        )
    return f"at most {s.callers_bound} can: one per worker"


def _error_lines(r: RunRecord, errors: Iterable[dict[str, Any]]) -> list[str]:
    """One line per type of error the workers' code raised, in the backend's words (the
    PoolTimeouts are the pool's line)."""
    by_type: dict[str, list[dict[str, Any]]] = {}
    for error in errors:
        if error["type"] != "PoolTimeout":
            by_type.setdefault(error["type"], []).append(error)
    lines = []
    busy = r.deployment.get("busy_timeout_s") or 10.0
    for kind, groups in by_type.items():
        n = sum(group["count"] for group in groups)
        where = (
            f" in {groups[0]['where']}"
            if len(groups) == 1
            else ": " + " and ".join(f"{group['count']:,} in {group['where']}" for group in groups)
        )
        calls, they = ("1 call", "it") if n == 1 else (f"{n:,} calls", "they")
        message = groups[0]["message"]
        if kind == "OperationalError" and "locked" in message:
            lines.append(
                f"{calls} failed with OperationalError ('{message}'){where}; {they} waited "
                f"longer than SQLite's busy timeout ({busy:g} s) for the write lock. The same "
                "queue, not a separate fault."
            )
        else:
            detail = f" ({message})" if message else ""
            lines.append(f"{calls} raised {kind}{detail}{where}.")
    return lines


def history_lines(r: RunRecord, *, limit: int, width: int = 100) -> list[str]:
    """The first ``limit`` offending jobs' histories, as lines: each job's timeline, drawn as
    the grader draws a race's (``harness.world.history``)."""
    lines = []
    for job in r.jobs[:limit]:
        email = f" ({job['email']})" if job["email"] else ""
        lines += textwrap.wrap(
            f"job {job['job_id']}{email}: {job['why']}",
            width,
            subsequent_indent="  ",
            break_long_words=False,
            break_on_hyphens=False,
        )
        lines += Timeline(
            [
                Event(e["at"], e["worker"], e["kind"], e["what"], tuple(e["jobs"]), e["site"])
                for e in job["events"]
            ],
            0.0,
        ).lines(width)
    return lines


def _calls(counts: dict[str, int]) -> str:
    """``28 API calls (send_email 28) were``."""
    total = sum(counts.values())
    each = ", ".join(f"{op} {n:,}" for op, n in counts.items())
    if total == 1:
        return f"1 API call ({each}) was"
    return f"{total:,} API calls ({each}) were"


def _api(r: RunRecord, operation: str) -> str:
    spread = r.facts["api"][operation]
    return f"p50 {_s(spread['p50'])}, p99 {_s(spread['p99'])}"


def _times(after: float, before: float) -> str:
    if before <= 0:
        return "up from 0 watched"
    return f"{after / before:.1f}x the {before:,.0f} watched"


def _s(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1.0 else f"{value:.2f} s"
