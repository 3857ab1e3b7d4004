"""Drill 4's diagnosis: one job kills every worker that runs it, and the queue's reaper returns it
to the queue without counting, so it kills the next one, and the next, forever. Every figure is
the record's: the crashes by job (``facts["crashes"]``), the recoveries of that job, the workers
down, the throughput over the run."""

from __future__ import annotations

from itertools import pairwise
from statistics import median
from typing import Any

from harness.sql.models import MAX_ATTEMPTS

from ..crash_loop import INCIDENT
from ..diagnosis import Diagnosis, Explanation, JobSeen, Verdict, ranked_by_default
from ..quiz import Choice, Point, Question
from ..record import RunRecord
from ..snapshot import RECENT
from .evidence import api, error_lines, s

__all__ = ["DIAGNOSIS"]

QUESTION = Question(
    prompt="Worker pods keep dying, a different one every second or so, and the queue's "
    "throughput falls in waves. What is the root cause?",
    choices=(
        Choice(
            "A",
            "The APIs are slow: workers wait on get_reply and the sentiment API until their "
            "pods' liveness probes kill them.",
        ),
        Choice(
            "B",
            "The connection pool is exhausted: workers time out waiting for a connection and "
            "die of it.",
        ),
        Choice(
            "C",
            "The workers deadlock on the jobs table, and the database kills them one after the "
            "other.",
        ),
        Choice(
            "D",
            "One job kills every worker that runs it, and the reaper returns it to the queue "
            "after each lease without counting, so it kills the next worker, forever.",
        ),
        Choice(
            "E",
            "The pods run out of memory under the campaign's load: they need more memory.",
        ),
    ),
    right="D",
    rubric=(
        Point(
            "count each expired claim (attempts + 1) in the reaper",
            r"count|attempt|retr(y|ies) (limit|budget|count)|max.?attempts|how (often|many)",
        ),
        Point(
            "fail the job that killed MAX_ATTEMPTS workers, with last_error (a dead letter)",
            r"fail|dead.?letter|quarantin|give up|gave up|park|poison|last.?error|skip",
        ),
        Point(
            "not more memory or a bigger pool: the job would kill the bigger worker too",
            r"(more|bigger|larger|increase|raise).{0,20}(memory|ram|pods?|workers|pool|limits?)",
            warns=True,
        ),
    ),
)


# -- the run's figures ----------------------------------------------------------------------------


def _killer(r: RunRecord) -> dict[str, Any] | None:
    """The job that killed the most workers, as the record keeps it (None: nobody died)."""
    jobs = r.facts.get("crashes", {}).get("jobs", [])
    return jobs[0] if jobs else None


def _interval(at: list[float]) -> float | None:
    """The typical time between two deaths of one job's workers."""
    gaps = [b - a for a, b in pairwise(at)]
    return median(gaps) if gaps else None


def _down(r: RunRecord) -> str:
    snap = r.snapshot
    return (
        f"on average {snap.states_avg['stopped']:.1f} of {snap.workers} workers were down, "
        f"restarting ({snap.states['stopped']} at the end)"
    )


def _waves(r: RunRecord) -> str:
    """How the throughput fell, as the board showed it: its first ``RECENT`` seconds against
    its last (a run too short for two windows: the trend's peak against the end)."""
    snap = r.snapshot
    if snap.elapsed < 2 * RECENT:
        return (
            f"The throughput peaked at {max(snap.series, default=0.0):,.0f} jobs/min and ended "
            f"at {snap.throughput_now:,.0f}: each worker lost is lost for the rest of a run "
            "this short."
        )
    first = next(x for x in r.timeline if x.elapsed >= RECENT)
    return (
        f"Throughput fell from {first.throughput_now:,.0f} jobs/min in the first {RECENT:g} s "
        f"to {snap.throughput_now:,.0f} in the last {RECENT:g} s: a worker lost every lease, "
        "and each one that comes back is the next to claim the job."
    )


def _all(n: int, of: int) -> str:
    """``all 9 of them`` or ``7 of them``."""
    return f"all {n:,} of them" if n == of else f"{n:,} of them"


def _job(killer: dict[str, Any]) -> str:
    return f"job {killer['job_id']}"


# -- whether a run shows the flaw ---------------------------------------------------------------


def signature(r: RunRecord, baseline: RunRecord | None) -> Verdict:
    """The flaw shows when one job killed more than ``MAX_ATTEMPTS`` workers, or when the
    reaper returned a job whose worker died without counting it (``attempts`` below the
    returns), or never returned it at all."""
    killer = _killer(r)
    if killer is None:
        return Verdict(False, "no worker died")
    row, n, back = killer["row"], killer["crashes"], killer["recovered"]
    job = _job(killer)
    if n > MAX_ATTEMPTS:
        return Verdict(
            True,
            f"{job} killed {n} workers; a reaper that counts fails it after {MAX_ATTEMPTS}",
        )
    if row.get("status") == "failed":
        return Verdict(
            False,
            f"{job} killed {n} workers, then the reaper failed it: {row.get('last_error')!r}",
        )
    if back and (row.get("attempts") or 0) < back:
        return Verdict(
            True,
            f"{job} killed {n} workers and went back to the queue {back} times, its attempts "
            f"still {row.get('attempts') or 0}: nothing counts, so nothing will stop it",
        )
    if not back and r.snapshot.elapsed - killer["at"][0] < 2 * r.snapshot.lease:
        return Verdict(False, f"{job} killed its worker too near the end of the run to tell")
    if not back:
        return Verdict(
            True,
            f"{job} killed its worker and was never returned to the queue: it stays "
            f"'{row.get('status')}' for good",
        )
    return Verdict(
        False,
        f"{job} killed {n} workers and its attempts read {row.get('attempts')}: the reaper counts",
    )


def symptom(watched: RunRecord, fixed: RunRecord) -> Verdict:
    """The page's symptom is the crash loop: cleared when the job that killed workers stopped
    killing them at ``MAX_ATTEMPTS``, failed by the reaper."""
    w, f = watched.snapshot, fixed.snapshot
    killer = _killer(fixed)
    stopped = killer is None or (
        killer["crashes"] <= MAX_ATTEMPTS and killer["row"].get("status") == "failed"
    )
    failed = (
        f" ({_job(killer)} failed by the reaper after {killer['crashes']})"
        if killer is not None and killer["row"].get("status") == "failed"
        else ""
    )
    return Verdict(
        not stopped,
        f"workers died {w.crashes:,} → {f.crashes:,} times{failed}; throughput "
        f"{w.throughput_avg:,.0f} → {f.throughput_avg:,.0f} jobs/min",
    )


# -- the explanation -------------------------------------------------------------------------------


def explain(r: RunRecord, fixed: RunRecord | None) -> Explanation:
    snap = r.snapshot
    killer = _killer(r)
    evidence = []
    if killer is None:
        evidence.append("No worker died in this run: too short for the poison job to be reached.")
    else:
        job, n = _job(killer), killer["crashes"]
        every = _interval(killer["at"])
        steps = " and ".join(killer["steps"])
        evidence.append(
            f"{snap.crashes:,} workers died mid-job, {_all(n, snap.crashes)} "
            f"running the same one, {job}: each in its {steps} step, right after get_reply "
            f"answered. Their logs say only '{killer['message']}'; "
            + (
                f"every one of the {snap.workers} workers died at least once."
                if killer["workers"] == snap.workers
                else f"{killer['workers']} of the {snap.workers} workers died at least once."
            )
        )
        row = killer["row"]
        evidence.append(
            f"The reaper returned {job} to the queue {killer['recovered']:,} times, each time "
            f"its claim expired ({snap.lease:g} s lease, heartbeat "
            f"{'on' if snap.heartbeat else 'off'})"
            + (
                f", one death every {s(every)} or so: the lease, then the next claim - {job} is "
                "the oldest pending job, so the next worker to claim gets it."
                if every is not None
                else "."
            )
            + f" Its attempts read {row.get('attempts', 0)}: nothing counted the deaths, and it "
            f"is still '{row.get('status', '?')}'."
        )
        evidence.append(
            f"A dead worker's pod comes back after Kubernetes' back-off "
            f"({r.deployment.get('restart_s', 0):g} s, doubled at each crash): {_down(r)}. "
            + _waves(r)
        )
    evidence.append(
        f"Not the APIs: get_reply answered in {api(r, 'get_reply')}, the sentiment API in "
        f"{api(r, 'analyze_sentiment')}. Not the pool: {snap.pool.timeouts:,} PoolTimeouts. "
        f"On average {snap.states_avg['waiting on a lock']:.1f} workers were waiting on a lock."
    )
    evidence += error_lines(r, r.facts["errors"])
    after = []
    if fixed is not None:
        f, cured = fixed.snapshot, _killer(fixed)
        if cured is not None:
            after.append(
                f"With the reaper that counts, on the same load and seed: {_job(cured)} killed "
                f"{cured['crashes']:,} workers (was {killer['crashes'] if killer else 0:,}), "
                f"then the reaper failed it with last_error "
                f"{cured['row'].get('last_error')!r}. {f.crashes:,} workers died in all (was "
                f"{snap.crashes:,}); the run finished {f.throughput_avg:,.0f} jobs/min (was "
                f"{snap.throughput_avg:,.0f}), {f.states['stopped']} workers down at the end "
                f"(was {snap.states['stopped']})."
            )
    return Explanation(
        root_cause=(
            "One job's reply kills the worker process that analyzes it, every time. When a "
            "worker dies, its claim stops being renewed, and the reaper - "
            "UPDATE jobs SET status = 'pending' WHERE the claim expired - returns the job to "
            "the queue without counting. The poison job is then the oldest pending job: the "
            "next worker to claim takes it and dies too, once per lease, while the dead pods "
            "wait out longer and longer restart back-offs. Nothing ever gives up on the job, so "
            "the crash loop only ends when no worker is left alive to take it."
        ),
        evidence=evidence,
        fix=(
            f"Make the reaper count: each expired claim adds one to attempts, and a job whose "
            f"workers died {MAX_ATTEMPTS} times (MAX_ATTEMPTS) is failed with last_error instead "
            "of being handed out again - a dead letter to look at and alert on. Then open a "
            "ticket for the parser; but a bigger pod or a fixed parser only waits for the next "
            "poison job."
        ),
        fixed=after,
    )


# -- why a wrong answer does not fit ---------------------------------------------------------------


def _one_job(r: RunRecord) -> str:
    killer = _killer(r)
    if killer is None:
        return "no worker died in this run"
    n, of = killer["crashes"], r.snapshot.crashes
    who = f"all {of:,} workers that died" if n == of else f"{n:,} of the {of:,} that died"
    return (
        f"{who} were running one job, {_job(killer)}, while the "
        f"{r.snapshot.finished_jobs:,} jobs that finished killed nobody"
    )


def _slow_apis(r: RunRecord) -> str:
    snap = r.snapshot
    return (
        f"get_reply answered in {api(r, 'get_reply')} and the sentiment API in "
        f"{api(r, 'analyze_sentiment')}; on average {snap.states_avg['in an API call']:.1f} "
        f"workers were in an API call. Slow APIs slow every job alike; here {_one_job(r)}."
    )


def _pool(r: RunRecord) -> str:
    snap = r.snapshot
    return (
        f"The pool timed out {snap.pool.timeouts:,} times (full {snap.pool_saturated_share:.0%} "
        "of the time), and a PoolTimeout is an exception the worker's code sees and survives: "
        f"worker errors {_errors(r)}. These workers did not fail, they died: {_one_job(r)}."
    )


def _deadlock(r: RunRecord) -> str:
    snap = r.snapshot
    return (
        "A deadlock victim gets an error (DeadlockDetected) and lives on; worker errors "
        f"{_errors(r)}, and on average {snap.states_avg['waiting on a lock']:.1f} workers were "
        f"waiting on a lock. The workers died in an API step, not in a statement: "
        f"{_one_job(r)}."
    )


def _memory(r: RunRecord) -> str:
    killer = _killer(r)
    every = _interval(killer["at"]) if killer else None
    pace = (
        f" They died one every {s(every)} or so: the pace of the {r.snapshot.lease:g} s lease, "
        "not of the load."
        if every
        else ""
    )
    return (
        "Memory short under load kills workers running any job, more of them as the load "
        f"grows; here {_one_job(r)}.{pace} A bigger pod would die on that job too."
    )


def _errors(r: RunRecord) -> str:
    raised = r.snapshot.worker_errors
    return ", ".join(f"{n:,} {kind}" for kind, n in sorted(raised.items())) or "none"


def telling(job: JobSeen) -> tuple[float, str]:
    """The jobs that killed workers first, the deadliest first."""
    if job.crashes:
        returned = f"; the reaper returned it {job.recoveries} times" if job.recoveries else ""
        verdict = ", then failed it" if job.given_up else ""
        return (
            1000 + job.crashes,
            f"{job.crashes} workers died running it{returned}{verdict}",
        )
    return ranked_by_default(job)


DIAGNOSIS = Diagnosis(
    incident=INCIDENT,
    question=QUESTION,
    signature=signature,
    symptom=symptom,
    explain=explain,
    refutations={"A": _slow_apis, "B": _pool, "C": _deadlock, "E": _memory},
    telling=telling,
)
