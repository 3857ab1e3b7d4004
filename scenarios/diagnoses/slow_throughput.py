"""Drill 1's diagnosis: the claim holds its lock across the email send, so claims go one at a
time. Throughput is only "low" next to the fix's on the same load (or the APIs' capacity)."""

from __future__ import annotations

from ..diagnosis import Diagnosis, Explanation, JobSeen, Verdict, ranked_by_default
from ..quiz import Choice, Point, Question
from ..record import RunRecord
from ..slow_throughput import INCIDENT
from .evidence import api, calls, error_lines, ratio, s, times
from .points import SEND_OUTSIDE, STABLE_KEY

__all__ = ["DIAGNOSIS", "SLOW_SHARE"]

#: Incident 1 shows its flaw when throughput is below this share of the fix's on the same load.
SLOW_SHARE = 0.25

QUESTION = Question(
    prompt="The workers are healthy, yet the campaign moves at a fraction of what twenty "
    "workers should do. What is the root cause?",
    choices=(
        Choice("A", "SendGrid is slow: its latency caps how many jobs the workers can finish."),
        Choice(
            "B",
            "The claim holds the job's row lock (SELECT ... FOR UPDATE) - its transaction - "
            "while it calls the email API, so the other workers queue behind that lock to claim.",
        ),
        Choice(
            "C",
            "The connection pool is too small for twenty workers, so they wait for connections.",
        ),
        Choice(
            "D", "The pending-jobs index is missing, so every claim scans the whole jobs table."
        ),
        Choice(
            "E",
            "Workers crash and their jobs wait for the lease to expire before anyone retries them.",
        ),
    ),
    right="B",
    rubric=(
        Point(
            "claim in one short statement (UPDATE ... RETURNING; SKIP LOCKED on PostgreSQL)",
            r"one (short )?statement|single (update|statement|query)|update.*returning|"
            r"returning|skip locked|atomic|short(er)? (claim|transaction)",
        ),
        SEND_OUTSIDE,
        STABLE_KEY,
    ),
)


# -- whether a run shows the flaw ---------------------------------------------------------------


def signature(r: RunRecord, baseline: RunRecord | None) -> Verdict:
    """Throughput below ``SLOW_SHARE`` of the fix's on the same load; without one, of the
    measured API capacity."""
    snap = r.snapshot
    if baseline is not None:
        base = baseline.jobs_per_minute
        reference, what = base, f"the fix's {base:,.0f}"
    else:
        reference, what = snap.capacity or 0.0, f"a capacity of {snap.capacity or 0:,.0f}"
    share = snap.throughput_avg / reference if reference else 1.0
    return Verdict(
        share < SLOW_SHARE,
        f"{snap.throughput_avg:,.0f} jobs/min is {share:.0%} of {what} jobs/min on the same "
        f"load (the flaw shows below {SLOW_SHARE:.0%})",
    )


def symptom(watched: RunRecord, fixed: RunRecord) -> Verdict:
    w, f = watched.snapshot, fixed.snapshot
    return Verdict(
        signature(fixed, fixed).shows_flaw or not signature(watched, fixed).shows_flaw,
        f"throughput {w.throughput_avg:,.0f} → {f.throughput_avg:,.0f} jobs/min "
        f"({ratio(f.throughput_avg, w.throughput_avg)})",
    )


# -- the explanation -------------------------------------------------------------------------------


def explain(r: RunRecord, fixed: RunRecord | None) -> Explanation:
    snap = r.snapshot
    sqlite = r.dialect == "sqlite"
    evidence = []
    if snap.capacity and snap.api_seconds_per_job:
        evidence.append(
            f"The APIs are not the limit: a job spends {s(snap.api_seconds_per_job)} in API "
            f"calls, so {snap.workers} workers could finish {snap.capacity:,.0f} jobs/min; they "
            f"finished {snap.throughput_avg:,.0f} jobs/min "
            f"({snap.throughput_avg / snap.capacity:.0%})."
        )
    else:
        evidence.append(
            f"The workers finished {snap.throughput_avg:,.0f} jobs/min; no job got through all "
            "its API calls, so what the APIs would allow was not measured."
        )
    evidence.append(
        f"On average {snap.states_avg['waiting on a lock']:.1f} of {snap.workers} workers were "
        f"waiting on a lock (a statement running > 50 ms), and "
        f"{snap.states_avg['in an API call']:.1f} were in an API call."
    )
    claim = snap.latency["claim"]
    step = snap.latency.get("send_email", {"n": 0, "p50": 0.0})
    step_note = (
        f" (The board's send_email step, p50 {s(step['p50'])}, is process_job's step: the "
        "email usually went out with the claim, so it has little left to do.)"
        if step["n"]
        else ""
    )
    evidence.append(
        f"claim_next_job took {s(claim['p50'])} at p50 and {s(claim['p99'])} at p99 - longer "
        f"than SendGrid's send_email API call itself ({api(r, 'send_email')}), which the claim "
        f"makes inside its transaction: claims wait for one another.{step_note}"
    )
    inside = r.facts["in_transaction"]["calls"]
    if inside:
        held = (
            f"each holds the write lock for one send: the longest open transaction reached "
            f"{s(snap.oldest_transaction_max)}"
            if sqlite
            else f"a transaction stayed open up to {s(snap.oldest_transaction_max)}, most of it "
            "waiting for the row lock"
        )
        evidence.append(
            f"{calls(inside)} made while holding a transaction - the email is sent inside the "
            f"claim's transaction; {held}."
        )
    errors = r.facts["errors"]
    deadlocks = sum(
        e["count"]
        for e in errors
        if e["type"] == "DeadlockDetected" and e["where"] == "claim_next_job"
    )
    if snap.recoveries:
        if sqlite:
            evidence.append(
                f"The heartbeats queue for the write lock too: {snap.recoveries:,} running jobs "
                f"could not renew their claim within the {snap.lease:g} s lease and were handed "
                "to a second worker."
            )
        else:
            evidence.append(
                "PostgreSQL keeps the lock on every row a FOR UPDATE waited for, even one it "
                "then skipped, so each claimer also holds the previous job's row while it sends: "
                f"{snap.recoveries:,} running jobs could not renew their claim within the "
                f"{snap.lease:g} s lease and were handed to a second worker"
                + (f", and {deadlocks:,} claims died as deadlock victims." if deadlocks else ".")
            )
    evidence += error_lines(r, errors)
    evidence.append(
        f"Not the pool: {snap.pool.timeouts:,} PoolTimeouts, and it was full "
        f"{snap.pool_saturated_share:.0%} of the time."
    )
    after = []
    if fixed is not None:
        f = fixed.snapshot
        after.append(
            f"With the fix, the same load and seed ran at {f.throughput_avg:,.0f} jobs/min "
            f"({times(f.throughput_avg, snap.throughput_avg)}), claim p99 "
            f"{s(f.latency['claim']['p99'])} (was {s(claim['p99'])}), "
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


# -- why a wrong answer does not fit ---------------------------------------------------------------


def _slow_sendgrid(r: RunRecord) -> str:
    snap, sends = r.snapshot, r.facts["api"]["send_email"]
    capacity = (
        f"{snap.workers} workers could finish {snap.capacity:,.0f} jobs/min at "
        f"{s(snap.api_seconds_per_job)} of API time per job; they finished "
        f"{snap.throughput_avg:,.0f}. "
        if snap.capacity and snap.api_seconds_per_job
        else ""
    )
    return (
        f"SendGrid answered its send_email calls in p50 {s(sends['p50'])}, p99 "
        f"{s(sends['p99'])}: {capacity}A slow API keeps workers in API calls, but on average "
        f"only {snap.states_avg['in an API call']:.1f} were, and "
        f"{snap.states_avg['waiting on a lock']:.1f} were waiting on a lock."
    )


def _small_pool(r: RunRecord) -> str:
    snap = r.snapshot
    return (
        f"Workers short of connections would wait for the pool: it was full "
        f"{snap.pool_saturated_share:.0%} of the time, with {snap.pool.timeouts:,} PoolTimeouts "
        f"and a longest wait of {s(snap.pool.max_wait)}. They were waiting on a lock instead "
        f"({snap.states_avg['waiting on a lock']:.1f} of {snap.workers} on average), each "
        "holding its connection."
    )


def _missing_index(r: RunRecord) -> str:
    snap, claim = r.snapshot, r.snapshot.latency["claim"]
    return (
        f"A scan makes every claim slow on its own; a claim here took p50 {s(claim['p50'])} "
        f"but p99 {s(claim['p99'])}, on a table of {snap.jobs:,} jobs, and the workers spent it "
        f"waiting on a lock ({snap.states_avg['waiting on a lock']:.1f} of {snap.workers} on "
        "average): waiting for one another, not reading."
    )


def _crashes(r: RunRecord) -> str:
    snap = r.snapshot
    errors = ", ".join(f"{n:,} {kind}" for kind, n in sorted(snap.worker_errors.items())) or "none"
    return (
        f"The workers did not crash: worker errors {errors}, and on average "
        f"{snap.states_avg['stopped']:.1f} of {snap.workers} were stopped. The "
        f"{snap.recoveries:,} jobs handed to a second worker were running jobs whose heartbeats "
        "queued for the same lock as the claims."
    )


def telling(job: JobSeen) -> tuple[float, str]:
    """A job whose API calls were made inside a transaction first, the longest held first."""
    if job.calls_in_transaction:
        return (
            10 + job.seconds_in_transaction,
            f"{job.calls_in_transaction} API call(s) made inside a transaction",
        )
    return ranked_by_default(job)


DIAGNOSIS = Diagnosis(
    incident=INCIDENT,
    question=QUESTION,
    sqlite_choices={
        "B": "The claim holds SQLite's write lock - its BEGIN IMMEDIATE transaction - while it "
        "calls the email API, so the other workers queue behind that lock to claim.",
    },
    signature=signature,
    symptom=symptom,
    explain=explain,
    refutations={"A": _slow_sendgrid, "C": _small_pool, "D": _missing_index, "E": _crashes},
    telling=telling,
)
