"""Diagnosis: each incident's question, its signature in the metrics, and its explanation.

* ``QUESTIONS[n]`` - the multiple-choice diagnosis asked after incident ``n``.
* ``signature(result, baseline)`` - does this run show the incident's flaw? Decided from measured
  figures only (the same test the suite applies to the incident's code, its fix, and a
  candidate's solution).
* ``explain(result, fixed)`` - root cause, the evidence in this run's metrics that points to it
  (quoting the measured numbers), and the fix.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from dataclasses import dataclass

from harness.metrics import percentile

from .measure import RunResult
from .quiz import Choice, Question

__all__ = ["QUESTIONS", "Explanation", "Verdict", "explain", "signature"]

#: Incident 1 shows its flaw when throughput is below this share of the fix's on the same load.
SLOW_SHARE = 0.25


def _question(prompt: str, right: str, *choices: str) -> Question:
    return Question(
        prompt=prompt,
        choices=tuple(Choice("ABCDE"[i], text) for i, text in enumerate(choices)),
        right=right,
    )


QUESTIONS: dict[int, Question] = {
    1: _question(
        "The workers are healthy, yet the campaign moves at a fraction of what twenty workers "
        "should do. What is the root cause?",
        "B",
        "SendGrid is slow: its latency caps how many jobs the workers can finish.",
        "The claim holds the job's row lock - its transaction - while it calls the email API, "
        "so the other workers queue behind that lock to claim.",
        "The connection pool is too small for twenty workers, so they wait for connections.",
        "The pending-jobs index is missing, so every claim scans the whole jobs table.",
        "Workers crash and their jobs wait for the lease to expire before anyone retries them.",
    ),
    2: _question(
        "Customers received the campaign email two or three times. What is the root cause?",
        "D",
        "SendGrid redelivers on its side after a timeout: nothing in our code can prevent it.",
        "The campaign was queued twice, so some customers have two jobs.",
        "Two workers claim the same pending job because the claim is not atomic.",
        "Jobs outlive their lease with no heartbeat, so a running job is handed to a second "
        "worker, which sends again with a fresh idempotency key per request.",
        "The analyze step re-sends the email when it cannot find the reply.",
    ),
    3: _question(
        "During the launch burst the workers log PoolTimeout errors and p99 latency spikes. "
        "What is the root cause?",
        "C",
        "The database is overloaded: statements are slow, so connections stay busy.",
        "The pool is simply too small: ten connections for twenty workers.",
        "The email step keeps a transaction - and its pooled connection - open across the "
        "SendGrid call, so connections sit idle while the other workers wait for one.",
        "A connection leaks on an error path and is never returned to the pool.",
        "The claim query lacks SKIP LOCKED, so claimers block one another.",
    ),
}


@dataclass(frozen=True)
class Verdict:
    shows_flaw: bool
    summary: str

    def as_dict(self) -> dict[str, object]:
        return {"shows_flaw": self.shows_flaw, "summary": self.summary}


@dataclass(frozen=True)
class Explanation:
    root_cause: str
    evidence: list[str]
    fix: str

    def as_dict(self) -> dict[str, object]:
        return {"root_cause": self.root_cause, "evidence": self.evidence, "fix": self.fix}


# -- signatures ------------------------------------------------------------------------------------


def signature(result: RunResult, baseline: RunResult | None = None) -> Verdict:
    """Whether ``result`` shows its incident's flaw. Incident 1 compares with ``baseline`` (the
    fix on the same load); without one it compares with the measured API capacity."""
    number = result.incident.number
    s = result.snapshot
    if number == 1:
        if baseline is not None:
            reference, what = baseline.jobs_per_minute, f"the fix's {baseline.jobs_per_minute:,.0f}"
        else:
            reference, what = s.capacity or 0.0, f"a capacity of {s.capacity or 0:,.0f}"
        share = s.throughput_avg / reference if reference else 1.0
        return Verdict(
            share < SLOW_SHARE,
            f"{s.throughput_avg:,.0f} jobs/min is {share:.0%} of {what} jobs/min on the same "
            f"load (the flaw shows below {SLOW_SHARE:.0%})",
        )
    if number == 2:
        return Verdict(
            s.duplicate_copies > 0,
            f"{s.duplicate_copies:,} duplicate copies of the email went to "
            f"{s.duplicated_recipients:,} customers",
        )
    if number == 3:
        return Verdict(
            s.pool.timeouts > 0,
            f"{s.pool.timeouts:,} PoolTimeouts; p99 of a claim {_s(s.latency['claim']['p99'])}",
        )
    raise ValueError(f"no signature for incident {number}")


# -- explanations ----------------------------------------------------------------------------------


def explain(result: RunResult, fixed: RunResult | None = None) -> Explanation:
    """Root cause, evidence quoted from ``result`` (the flawed run) and ``fixed``, and the fix."""
    number = result.incident.number
    if number == 1:
        return _explain_slow(result, fixed)
    if number == 2:
        return _explain_duplicates(result, fixed)
    if number == 3:
        return _explain_pool(result, fixed)
    raise ValueError(f"no explanation for incident {number}")


def _explain_slow(r: RunResult, fixed: RunResult | None) -> Explanation:
    s = r.snapshot
    lock = (
        "the row lock (SELECT ... FOR UPDATE)"
        if r.dialect == "postgresql"
        else ("SQLite's write lock (BEGIN IMMEDIATE)")
    )
    evidence = []
    if s.capacity and s.api_seconds_per_job:
        evidence.append(
            f"The APIs are not the limit: a job spends {_s(s.api_seconds_per_job)} in API calls, "
            f"so {s.workers} workers could finish {s.capacity:,.0f} jobs/min; they finished "
            f"{s.throughput_avg:,.0f} ({s.throughput_avg / s.capacity:.0%})."
        )
    evidence.append(
        f"On average {s.states_avg['waiting on a lock']:.1f} of {s.workers} workers were waiting "
        f"on a lock (a statement running > 50 ms), and "
        f"{s.states_avg['in an API call']:.1f} were in an API call."
    )
    claim = s.latency["claim"]
    evidence.append(
        f"claim_next_job took {_s(claim['p50'])} at p50 and {_s(claim['p99'])} at p99 - longer "
        f"than a whole email send ({_api(r, 'send_email')}): claims wait for one another."
    )
    inside = _calls_in_transaction(r)
    if inside:
        evidence.append(
            "API calls made while holding a transaction: "
            + ", ".join(f"{op} {n:,}" for op, n in inside.most_common())
            + " - the email is sent inside the claim's transaction."
        )
    deadlocks = s.worker_errors.get("DeadlockDetected", 0)
    if r.dialect == "postgresql" and (deadlocks or s.recoveries):
        evidence.append(
            "PostgreSQL keeps the lock on every row a FOR UPDATE waited for, even one it then "
            "skipped, so each claimer also holds the previous job's row while it sends: "
            f"{s.recoveries:,} running jobs could not renew their claim and were handed to a "
            f"second worker, and {deadlocks:,} claims died as deadlock victims."
        )
    elif s.recoveries:
        evidence.append(
            f"The heartbeats queue for the write lock too: {s.recoveries:,} running jobs could "
            "not renew their claim in time and were handed to a second worker."
        )
    evidence.append(
        f"Not the pool: {s.pool.timeouts:,} PoolTimeouts, and it was full "
        f"{s.pool_saturated_share:.0%} of the time."
    )
    if fixed is not None:
        f = fixed.snapshot
        evidence.append(
            f"With the fix, the same load ran at {f.throughput_avg:,.0f} jobs/min "
            f"({_times(f.throughput_avg, s.throughput_avg)}), claim p99 "
            f"{_s(f.latency['claim']['p99'])}, {f.states_avg['waiting on a lock']:.1f} workers "
            "waiting on a lock on average."
        )
    return Explanation(
        root_cause=(
            f"claim_next_job opens a transaction, takes {lock} on the oldest pending job and "
            "sends its email before committing. Every other worker's claim wants the same row "
            "(or the same write lock), so they queue behind it: claims are serialised at one "
            "email send each, whatever the number of workers."
        ),
        evidence=evidence,
        fix=(
            "Claim in one short statement - UPDATE ... WHERE id = (SELECT ... FOR UPDATE SKIP "
            "LOCKED) RETURNING * on PostgreSQL, a single UPDATE ... RETURNING on SQLite - and "
            "send the email afterwards in process_job, outside any transaction, with an "
            "idempotency key per job and step (that key, not a lock, prevents a second email)."
        ),
    )


def _explain_duplicates(r: RunResult, fixed: RunResult | None) -> Explanation:
    s = r.snapshot
    by_recipient = defaultdict(list)
    for delivery in r.services.ledger.deliveries:
        by_recipient[delivery.to].append(delivery)
    duplicated = {to: ds for to, ds in by_recipient.items() if len(ds) > 1}
    recovered = {job_id for job_id, _ in r.report.recovered}
    evidence = [
        f"{s.duplicate_copies:,} duplicate copies went to {s.duplicated_recipients:,} customers "
        f"(at most {max((len(d) for d in duplicated.values()), default=0)} emails to one)."
    ]
    if duplicated:
        one_job = sum(len({d.job_id for d in ds}) == 1 for ds in duplicated.values())
        two_workers = sum(len({d.caller for d in ds}) > 1 for ds in duplicated.values())
        fresh_keys = sum(len({d.key for d in ds}) == len(ds) for ds in duplicated.values())
        after_recovery = sum(any(d.job_id in recovered for d in ds) for ds in duplicated.values())
        evidence.append(
            f"Each of them has one job ({one_job} of {len(duplicated)}): the campaign was not "
            f"queued twice. {two_workers} got their copies from two different workers, and "
            f"{after_recovery} belong to jobs the lease recovery handed to another worker."
        )
        evidence.append(
            f"Every copy carried its own idempotency key ({fresh_keys} of {len(duplicated)} "
            "customers): SendGrid could not know the second request was the same email."
        )
    durations = [c.duration for c in r.services.ledger.calls_for(operation="send_email")]
    over = sum(d > s.lease for d in durations)
    evidence.append(
        f"The lease is {s.lease:g} s with the heartbeat {'on' if s.heartbeat else 'off'}, but "
        f"send_email took {_s(percentile(durations, 99))} at p99 and up to "
        f"{_s(max(durations, default=0.0))}; {over:,} sends outlasted the lease. "
        f"{s.recoveries:,} running jobs were handed to another worker."
    )
    timeouts = sum(c.outcome == "timeout_after" for c in r.services.ledger.calls)
    if timeouts:
        evidence.append(
            f"{timeouts:,} sends timed out after SendGrid had delivered; each retry with a new "
            "key delivered again."
        )
    if fixed is not None:
        f = fixed.snapshot
        replayed = sum(
            c.outcome == "replayed" for c in fixed.services.ledger.calls_for(operation="send_email")
        )
        evidence.append(
            f"With the fix (same lease, same load): {f.duplicate_copies:,} duplicate copies; "
            f"{f.recoveries:,} jobs were still handed over, and {replayed:,} second sends were "
            "answered with the first email's message id instead of a new email."
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
    )


def _explain_pool(r: RunResult, fixed: RunResult | None) -> Explanation:
    s = r.snapshot
    errors = ", ".join(f"{name} {n:,}" for name, n in s.worker_errors.items()) or "none"
    send_step = s.latency.get("send_email", {"p50": 0.0, "p99": 0.0})
    evidence = [
        f"{s.pool.timeouts:,} PoolTimeouts after waiting {_s(s.pool.max_wait)} at most (errors "
        f"raised in the workers: {errors}). The pool of {s.pool.max_size} was full "
        f"{s.pool_saturated_share:.0%} of the time, with up to {s.pool_peak_waiting} callers "
        "waiting.",
    ]
    inside = _calls_in_transaction(r)
    if inside:
        evidence.append(
            "API calls made while holding a transaction (and its connection): "
            + ", ".join(f"{op} {n:,}" for op, n in inside.most_common())
            + f"; the oldest open transaction reached {_s(s.oldest_transaction_max)}."
        )
    evidence.append(
        f"The send_email step took {_s(send_step['p50'])} at p50 and {_s(send_step['p99'])} at "
        f"p99, against {_api(r, 'send_email')} for SendGrid itself: the rest is waiting for a "
        "connection."
    )
    quick = [name for name in ("claim", "take_action") if s.latency.get(name, {}).get("n")]
    if quick:
        spikes = ", ".join(f"{name} p99 {_s(s.latency[name]['p99'])}" for name in quick)
        if fixed is not None:
            after = fixed.snapshot.latency
            spikes += (
                " (with the fix: "
                + ", ".join(_s(after[name]["p99"]) for name in quick if name in after)
                + ")"
            )
        evidence.append(
            f"Calls that make no slow request spike too - {spikes}: they wait for a connection "
            "like everyone else."
        )
    evidence.append(
        f"Not a leak: once the workers stopped, {s.pool.in_use} connections were still in use."
    )
    if fixed is not None:
        f = fixed.snapshot
        evidence.append(
            f"With the fix, the same {f.pool.max_size} connections and the same load: "
            f"{f.pool.timeouts:,} PoolTimeouts, send_email p99 "
            f"{_s(f.latency.get('send_email', {'p99': 0.0})['p99'])}, pool full "
            f"{f.pool_saturated_share:.0%} of the time - so the pool was not too small."
        )
    return Explanation(
        root_cause=(
            "send_email_step opens a transaction (locking the job's row) and calls SendGrid "
            "inside it. The transaction's pooled connection is held, doing nothing, for the "
            "whole network call and its retries; with twenty workers and ten connections, the "
            "launch burst leaves callers waiting longer than the 1 s pool timeout."
            + (
                " On SQLite the transaction also holds the database's write lock."
                if r.dialect == "sqlite"
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
    )


# -- measured details ------------------------------------------------------------------------------


def _calls_in_transaction(r: RunResult) -> Counter[str]:
    return Counter(c.operation for c in r.services.ledger.calls if c.in_transaction)


def _api(r: RunResult, operation: str) -> str:
    durations = [
        c.duration
        for c in r.services.ledger.calls_for(operation=operation)
        if c.outcome in ("ok", "replayed")
    ]
    return f"p50 {_s(percentile(durations, 50))}, p99 {_s(percentile(durations, 99))}"


def _times(after: float, before: float) -> str:
    return f"{after / before:.1f}x" if before > 0 else "from zero"


def _s(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1.0 else f"{value:.2f} s"
