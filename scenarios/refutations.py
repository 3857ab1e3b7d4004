"""Why a wrong answer does not fit the run that was watched.

A debrief that only proves the right answer leaves the candidate's own answer standing: "two
workers sent to the same customer" reads like support for "the claim is not atomic". So each
wrong choice of each incident has its refutation here, quoted from the run's record (the board's
figures and the facts taken from the ledger when it ended): what that answer predicts, and what
the run shows instead. Nothing here measures.
"""

from __future__ import annotations

from collections.abc import Callable

from .record import RunRecord

__all__ = ["why_not"]


def why_not(r: RunRecord, letter: str) -> str | None:
    """Why choice ``letter`` of the run's incident does not fit the run (None: the right one)."""
    refute = _REFUTATIONS.get(r.incident, {}).get(letter.upper())
    return refute(r) if refute is not None else None


# -- incident 1: the campaign is crawling ---------------------------------------------------------


def _slow_sendgrid(r: RunRecord) -> str:
    s, api = r.snapshot, r.facts["api"]["send_email"]
    capacity = (
        f"{s.workers} workers could finish {s.capacity:,.0f} jobs/min at "
        f"{_s(s.api_seconds_per_job)} of API time per job; they finished "
        f"{s.throughput_avg:,.0f}. "
        if s.capacity and s.api_seconds_per_job
        else ""
    )
    return (
        f"SendGrid answered its send_email calls in p50 {_s(api['p50'])}, p99 {_s(api['p99'])}: "
        f"{capacity}A slow API keeps workers in API calls, but on average only "
        f"{s.states_avg['in an API call']:.1f} were, and "
        f"{s.states_avg['waiting on a lock']:.1f} were waiting on a lock."
    )


def _small_pool_1(r: RunRecord) -> str:
    s = r.snapshot
    return (
        f"Workers short of connections would wait for the pool: it was full "
        f"{s.pool_saturated_share:.0%} of the time, with {s.pool.timeouts:,} PoolTimeouts and "
        f"a longest wait of {_s(s.pool.max_wait)}. They were waiting on a lock instead "
        f"({s.states_avg['waiting on a lock']:.1f} of {s.workers} on average), each holding "
        "its connection."
    )


def _missing_index(r: RunRecord) -> str:
    s, claim = r.snapshot, r.snapshot.latency["claim"]
    return (
        f"A scan makes every claim slow on its own; a claim here took p50 {_s(claim['p50'])} "
        f"but p99 {_s(claim['p99'])}, on a table of {s.jobs:,} jobs, and the workers spent it "
        f"waiting on a lock ({s.states_avg['waiting on a lock']:.1f} of {s.workers} on "
        "average): waiting for one another, not reading."
    )


def _crashes_1(r: RunRecord) -> str:
    s = r.snapshot
    errors = ", ".join(f"{n:,} {kind}" for kind, n in sorted(s.worker_errors.items())) or "none"
    return (
        f"The workers did not crash: worker errors {errors}, and on average "
        f"{s.states_avg['stopped']:.1f} of {s.workers} were stopped. The {s.recoveries:,} jobs "
        "handed to a second worker were running jobs whose heartbeats queued for the same "
        "lock as the claims."
    )


# -- incident 2: customers got the email more than once -------------------------------------------


def _sendgrid_redelivers(r: RunRecord) -> str:
    d, sends = r.facts["duplicates"], r.facts["sends"]
    return (
        f"Each copy was a request of ours: {d['fresh_keys']} of the {d['recipients']} customers "
        "got copies that each carried their own idempotency key, so SendGrid delivered what it "
        f"was asked for. {sends['timeouts_after_delivery']:,} sends timed out after delivering; "
        "retried with the first request's key, SendGrid would have answered with the first "
        "message id. The key is our code's to choose."
    )


def _queued_twice(r: RunRecord) -> str:
    d = r.facts["duplicates"]
    return (
        f"A campaign queued twice gives a customer two jobs; {d['one_job']} of the "
        f"{d['recipients']} customers with copies have one job. It was queued once, and that "
        "one job sent more than once."
    )


def _claim_not_atomic(r: RunRecord) -> str:
    s, d, sends = r.snapshot, r.facts["duplicates"], r.facts["sends"]
    handed = (
        f"{d['after_recovery']} of the {d['recipients']} customers' jobs are among the "
        f"{s.recoveries:,} running jobs the lease recovery handed to a second worker"
    )
    return (
        "A claim that is not atomic gives one pending job to two workers at the same moment. "
        f"Here {handed}: their lease ({s.lease:g} s, heartbeat "
        f"{'on' if s.heartbeat else 'off'}) expired while the first worker was still sending "
        f"({sends['over_lease']:,} sends outlasted it; p99 {_s(sends['p99'])}). That is why "
        f"{d['two_workers']} got their copies from two different workers: the first, and the "
        "one it was handed to, after a claim that was exclusive."
    )


def _analyze_resends(r: RunRecord) -> str:
    d = r.facts["duplicates"]
    return (
        "The analyze step calls get_reply and analyze_sentiment; it sends no email. The copies "
        f"are send_email calls, each with a fresh key ({d['fresh_keys']} of {d['recipients']} "
        f"customers), and {d['after_recovery']} of those customers' jobs had been handed to a "
        "second worker after their lease expired: the send step ran twice."
    )


# -- incident 3: PoolTimeout under the launch burst -----------------------------------------------


def _database_overloaded(r: RunRecord) -> str:
    s = r.snapshot
    return (
        f"An overloaded database makes statements slow; the time went waiting for a "
        f"connection instead (up to {_s(s.pool.max_wait)}, {s.pool.timeouts:,} PoolTimeouts) "
        f"while {s.calls_in_transaction:,} API calls were made inside a transaction, its "
        "connection held idle for the whole call."
    )


def _pool_too_small(r: RunRecord) -> str:
    s, inside = r.snapshot, r.facts["in_transaction"]
    return (
        f"The {s.pool.max_size} connections were held through {s.calls_in_transaction:,} API "
        f"calls made inside a transaction ({inside['seconds']:.1f} s of them in all, "
        f"{inside['rate_limited']:,} answered 429 and waited out in the transaction): a bigger "
        "pool fills the same way, one connection per send. `scenarios 3 --fixed` runs the same "
        "pool size without PoolTimeouts."
    )


def _leak(r: RunRecord) -> str:
    s = r.snapshot
    return (
        f"A leaked connection is never returned: once the workers stopped, {s.pool.in_use} of "
        f"{s.pool.max_size} connections were still in use. Every connection came back; they were "
        "held too long, inside transactions that made API calls."
    )


def _claimers_block(r: RunRecord) -> str:
    s = r.snapshot
    return (
        "Claimers that block one another wait on a lock with a connection in hand; here "
        f"{s.pool.timeouts:,} callers timed out before they got a connection at all (the pool "
        f"full {s.pool_saturated_share:.0%} of the time), while {s.calls_in_transaction:,} API "
        "calls held connections inside transactions."
    )


_REFUTATIONS: dict[int, dict[str, Callable[[RunRecord], str]]] = {
    1: {"A": _slow_sendgrid, "C": _small_pool_1, "D": _missing_index, "E": _crashes_1},
    2: {
        "A": _sendgrid_redelivers,
        "B": _queued_twice,
        "C": _claim_not_atomic,
        "E": _analyze_resends,
    },
    3: {"A": _database_overloaded, "B": _pool_too_small, "D": _leak, "E": _claimers_block},
}


def _s(value: float) -> str:
    return f"{value * 1000:.0f} ms" if value < 1.0 else f"{value:.2f} s"
