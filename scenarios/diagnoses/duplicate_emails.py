"""Drill 2's diagnosis: a lease shorter than the slowest send, no heartbeat, and a fresh
idempotency key per request, so a job still being sent is handed to a second worker that sends
again."""

from __future__ import annotations

from ..diagnosis import Diagnosis, Explanation, JobSeen, Verdict, ranked_by_default
from ..duplicate_emails import INCIDENT
from ..quiz import Choice, Point, Question
from ..record import RunRecord
from .evidence import error_lines, s
from .points import STABLE_KEY

__all__ = ["DIAGNOSIS"]

QUESTION = Question(
    prompt="Customers received the campaign email more than once. What is the root cause?",
    choices=(
        Choice(
            "A",
            "SendGrid redelivers on its side after a timeout: nothing in our code can prevent it.",
        ),
        Choice("B", "The campaign was queued twice, so some customers have two jobs."),
        Choice("C", "Two workers claim the same pending job because the claim is not atomic."),
        Choice(
            "D",
            "Jobs outlive their lease with no heartbeat, so a running job is handed to a second "
            "worker, which sends again with a fresh idempotency key per request.",
        ),
        Choice("E", "The analyze step re-sends the email when it cannot find the reply."),
    ),
    right="D",
    rubric=(
        STABLE_KEY,
        Point(
            "stop handing live jobs out: a heartbeat, or a lease longer than the slowest job",
            r"heart ?beat|lease|renew|extend",
        ),
    ),
)


def signature(r: RunRecord, baseline: RunRecord | None) -> Verdict:
    snap = r.snapshot
    return Verdict(
        snap.duplicate_copies > 0,
        f"{snap.duplicate_copies:,} duplicate copies of the email went to "
        f"{snap.duplicated_recipients:,} customers",
    )


def symptom(watched: RunRecord, fixed: RunRecord) -> Verdict:
    w, f = watched.snapshot, fixed.snapshot
    return Verdict(
        f.duplicate_copies > 0,
        f"duplicate copies {w.duplicate_copies:,} → {f.duplicate_copies:,}; jobs handed to a "
        f"second worker {w.recoveries:,} → {f.recoveries:,}",
    )


def explain(r: RunRecord, fixed: RunRecord | None) -> Explanation:
    snap = r.snapshot
    d = r.facts["duplicates"]
    evidence = [
        f"{snap.duplicate_copies:,} duplicate copies went to {snap.duplicated_recipients:,} "
        "customers" + (f" (at most {d['max_copies']} emails to one)." if d["recipients"] else ".")
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
        f"The lease is {snap.lease:g} s with the heartbeat {'on' if snap.heartbeat else 'off'}, "
        f"but send_email took {s(sends['p99'])} at p99 and up to {s(sends['max'])}; "
        f"{sends['over_lease']:,} sends outlasted the lease. {snap.recoveries:,} running jobs "
        "were handed to another worker."
    )
    if sends["timeouts_after_delivery"]:
        evidence.append(
            f"{sends['timeouts_after_delivery']:,} sends timed out after SendGrid had delivered; "
            "each retry with a new key delivered again."
        )
    evidence += error_lines(r, r.facts["errors"])
    after = []
    if fixed is not None:
        f = fixed.snapshot
        replayed = fixed.facts["sends"]["replayed"]
        after.append(
            f"With the whole fix (a key per job and step; lease {f.lease:g} s, heartbeat "
            f"{'on' if f.heartbeat else 'off'}) on the same load and seed: "
            f"{f.duplicate_copies:,} duplicate copies (was {snap.duplicate_copies:,}), "
            f"{f.recoveries:,} jobs handed to a second worker (was {snap.recoveries:,}), and "
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
    snap, d, sends = r.snapshot, r.facts["duplicates"], r.facts["sends"]
    handed = (
        f"{d['after_recovery']} of the {d['recipients']} customers' jobs are among the "
        f"{snap.recoveries:,} running jobs the lease recovery handed to a second worker"
    )
    return (
        "A claim that is not atomic gives one pending job to two workers at the same moment. "
        f"Here {handed}: their lease ({snap.lease:g} s, heartbeat "
        f"{'on' if snap.heartbeat else 'off'}) expired while the first worker was still sending "
        f"({sends['over_lease']:,} sends outlasted it; p99 {s(sends['p99'])}). That is why "
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


def telling(job: JobSeen) -> tuple[float, str]:
    """A job whose customer got copies first, the most copies first."""
    if job.copies > 1:
        return 100 + job.copies, f"its customer got {job.copies} emails"
    return ranked_by_default(job)


DIAGNOSIS = Diagnosis(
    incident=INCIDENT,
    question=QUESTION,
    signature=signature,
    symptom=symptom,
    explain=explain,
    refutations={
        "A": _sendgrid_redelivers,
        "B": _queued_twice,
        "C": _claim_not_atomic,
        "E": _analyze_resends,
    },
    telling=telling,
)
