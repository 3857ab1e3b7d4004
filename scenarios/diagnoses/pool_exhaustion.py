"""Drill 3's diagnosis: the email step keeps a transaction - and its pooled connection - open
across the SendGrid call, so the launch burst leaves callers waiting past the pool timeout."""

from __future__ import annotations

from ..diagnosis import Diagnosis, Explanation, Verdict
from ..pool_exhaustion import INCIDENT
from ..quiz import Choice, Point, Question
from ..record import RunRecord
from .evidence import api, callers, calls, error_lines, pool_timeouts_line, s
from .points import SEND_OUTSIDE, STABLE_KEY
from .slow_throughput import telling

__all__ = ["DIAGNOSIS"]

QUESTION = Question(
    prompt="During the launch burst the workers log PoolTimeout errors and the p99 latency of "
    "claiming a job spikes. What is the root cause?",
    choices=(
        Choice("A", "The database is overloaded: statements are slow, so connections stay busy."),
        Choice("B", "The pool is simply too small: ten connections for twenty workers."),
        Choice(
            "C",
            "The email step keeps a transaction - and its pooled connection - open across the "
            "SendGrid call, so connections sit idle while the other workers wait for one.",
        ),
        Choice("D", "A connection leaks on an error path and is never returned to the pool."),
        Choice("E", "The claim query lacks SKIP LOCKED, so claimers block one another."),
    ),
    right="C",
    rubric=(
        SEND_OUTSIDE,
        STABLE_KEY,
        Point(
            "not a bigger pool: every extra connection would sit idle during sends too",
            r"(bigger|larger|increase|raise|grow|more).{0,20}(pool|connections)|"
            r"pool.{0,12}(bigger|larger|size)",
            warns=True,
        ),
    ),
)


def signature(r: RunRecord, baseline: RunRecord | None) -> Verdict:
    snap = r.snapshot
    return Verdict(
        snap.pool.timeouts > 0,
        f"{snap.pool.timeouts:,} PoolTimeouts; p99 of a claim {s(snap.latency['claim']['p99'])}",
    )


def symptom(watched: RunRecord, fixed: RunRecord) -> Verdict:
    w, f = watched.snapshot, fixed.snapshot
    before, after = w.latency["claim"]["p99"], f.latency["claim"]["p99"]
    locked = sum(n for kind, n in w.worker_errors.items() if kind != "PoolTimeout")
    still = sum(n for kind, n in f.worker_errors.items() if kind != "PoolTimeout")
    return Verdict(
        f.pool.timeouts > 0 or after >= before or still > 0,
        f"PoolTimeouts {w.pool.timeouts:,} → {f.pool.timeouts:,}; claim p99 {s(before)} → "
        f"{s(after)}"
        + (f"; other worker errors {locked:,} → {still:,}" if locked or still else ""),
    )


def explain(r: RunRecord, fixed: RunRecord | None) -> Explanation:
    snap = r.snapshot
    sqlite = r.dialect == "sqlite"
    pool = snap.pool
    evidence = [
        pool_timeouts_line(snap)
        + f" The pool of {pool.max_size} was full {snap.pool_saturated_share:.0%} of the time, "
        f"with up to {snap.pool_peak_waiting} callers waiting at once ({callers(snap)}).",
    ]
    evidence += error_lines(r, r.facts["errors"])
    inside = r.facts["in_transaction"]
    if inside["calls"]:
        evidence.append(
            f"{calls(inside['calls'])} made while holding a transaction (and its connection"
            + (", and SQLite's write lock" if sqlite else "")
            + f"); {inside['rate_limited']:,} of them were answered 429, and the transaction "
            "stayed open through the retry_after wait. The longest open transaction reached "
            f"{s(snap.oldest_transaction_max)}."
        )
    send_step = snap.latency.get("send_email", {"p50": 0.0, "p99": 0.0, "n": 0})
    if send_step["n"]:
        evidence.append(
            f"The send_email step took {s(send_step['p50'])} at p50 and "
            f"{s(send_step['p99'])} at p99, against {api(r, 'send_email')} for SendGrid "
            "itself: the rest is retry_after waits and waiting for a connection"
            + (" or the write lock." if sqlite else ".")
        )
    claim = snap.latency["claim"]
    evidence.append(
        f"claim_next_job - one short UPDATE, no API call - took {s(claim['p99'])} at p99 "
        f"(p50 {s(claim['p50'])}): it waits for a connection like everyone else."
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
            f"{s(f.latency['claim']['p99'])} (was {s(claim['p99'])}), pool full "
            f"{f.pool_saturated_share:.0%} of the time, longest wait for a connection "
            f"{s(f.pool.max_wait)} - so the pool was not too small."
        )
        if fixed_send["n"]:
            after.append(
                f"The send_email step's own p99 ({s(fixed_send['p99'])} with the fix) is "
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


def _database_overloaded(r: RunRecord) -> str:
    snap = r.snapshot
    return (
        f"An overloaded database makes statements slow; the time went waiting for a "
        f"connection instead (up to {s(snap.pool.max_wait)}, {snap.pool.timeouts:,} "
        f"PoolTimeouts) while {snap.calls_in_transaction:,} API calls were made inside a "
        "transaction, its connection held idle for the whole call."
    )


def _pool_too_small(r: RunRecord) -> str:
    snap, inside = r.snapshot, r.facts["in_transaction"]
    return (
        f"The {snap.pool.max_size} connections were held through {snap.calls_in_transaction:,} "
        f"API calls made inside a transaction ({inside['seconds']:.1f} s of them in all, "
        f"{inside['rate_limited']:,} answered 429 and waited out in the transaction): a bigger "
        "pool fills the same way, one connection per send. `scenarios 3 --fixed` runs the same "
        "pool size without PoolTimeouts."
    )


def _leak(r: RunRecord) -> str:
    snap = r.snapshot
    return (
        f"A leaked connection is never returned: once the workers stopped, {snap.pool.in_use} "
        f"of {snap.pool.max_size} connections were still in use. Every connection came back; "
        "they were held too long, inside transactions that made API calls."
    )


def _claimers_block(r: RunRecord) -> str:
    snap = r.snapshot
    return (
        "Claimers that block one another wait on a lock with a connection in hand; here "
        f"{snap.pool.timeouts:,} callers timed out before they got a connection at all (the "
        f"pool full {snap.pool_saturated_share:.0%} of the time), while "
        f"{snap.calls_in_transaction:,} API calls held connections inside transactions."
    )


DIAGNOSIS = Diagnosis(
    incident=INCIDENT,
    question=QUESTION,
    sqlite_prompt="During the launch burst the workers log PoolTimeout and 'database is locked' "
    "errors, and the p99 latency of claiming a job spikes. What is the root cause?",
    sqlite_choices={
        "C": "The email step keeps a transaction - its pooled connection and SQLite's write lock "
        "- open across the SendGrid call, so connections sit idle while the other workers wait "
        "for one, or for the lock.",
        "E": "The claim is not one atomic statement, so claimers block one another.",
    },
    signature=signature,
    symptom=symptom,
    explain=explain,
    refutations={
        "A": _database_overloaded,
        "B": _pool_too_small,
        "D": _leak,
        "E": _claimers_block,
    },
    telling=telling,
)
