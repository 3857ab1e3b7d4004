"""The contract's end-to-end invariants, judged in one place.

    problems = await check_invariants(services, crash_plan, jobs=campaign_jobs)

reads the jobs and their transitions from the active database, what the fake APIs saw and did
from ``services.ledger``, and which workers crashed where from ``crash_plan``. It returns every
broken invariant as a diagnosis in the candidate's terms, with the evidence, in the order of the
contract (``[]`` when all hold):

1. every job ended ``completed`` or ``failed`` (a failed one says why, in ``last_error``);
2. each completed job delivered exactly one email, recorded one sentiment and applied exactly one
   CRM action, and recorded the ids the APIs returned; no job, completed or not, got two of either;
3. a job failed for a permanent error (``InvalidEmailError``) had exactly one ``send_email``
   attempt;
4. no API was called before a ``retry_after`` it was given had passed, nor inside a transaction
   (nor again after a permanent error, nor with an idempotency key reused for other arguments);
5. no job was claimed by two workers at the same time;

and, from the same transition history, the step only ever moved forward, each step once.

What no solution can avoid is excused, never more: a worker that dies between a permanent error
and the write that records it cannot help the next worker trying again (3 and 4 allow one more
attempt per crash of that job after the error), and a 429 given to one worker cannot bind a second
worker that the harness's lease recovery handed the job to after that 429 (the ledger records
every recovery; without one between the 429 and the early call, nothing is excused).

The grader (Task D and end to end), the runner's tests and the stress command share this judge.
``report_problems`` turns a ``RunReport`` that did not drain cleanly into diagnoses of the same
kind, and ``drain_and_judge`` runs a ``Runner`` and returns both.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from ..exceptions import InvalidEmailError
from ..sql.models import Job, JobStatus, JobTransition, Step
from ..tasks import is_not_started
from ..worker.runner import Runner, RunReport
from ..world.crashes import CrashPlan
from ..world.ledger import Call, CrmAction, Delivery, Ledger, Violation, ViolationKind
from ..world.services import (
    SENTIMENTS,
    Services,
    classify_sentiment,
    invalid_email_reason,
    reply_for,
)
from .diagnosis import describe_exception, describe_violation

__all__ = ["check_invariants", "drain_and_judge", "report_problems"]

_FINAL = (JobStatus.COMPLETED, JobStatus.FAILED)
_ORDER = list(Step)
_PERMANENT = InvalidEmailError.__name__


async def check_invariants(
    services: Services,
    crash_plan: CrashPlan | None = None,
    *,
    jobs: Iterable[Job | int] | None = None,
    drained: bool = True,
) -> list[str]:
    """Every broken end-to-end invariant, as diagnoses; ``[]`` when all hold.

    ``jobs`` narrows the judgement to those jobs (and the effects and violations that concern
    them), for a database that holds other runs too; by default every job is judged, and an
    email or CRM action for an address that has no job is a problem as well. ``drained=False``
    judges a run that was cut short: jobs still pending or running are not held against it,
    everything else is (a duplicate or a double claim often explains why the run broke down).
    """
    wanted = None if jobs is None else {j.id if isinstance(j, Job) else int(j) for j in jobs}
    selected = [j for j in await Job.all().order_by("id").all() if wanted is None or j.id in wanted]
    ids = {job.id for job in selected}
    history: dict[int, list[JobTransition]] = defaultdict(list)
    for transition in await JobTransition.all().order_by("id").all():
        if transition.job_id in ids:
            history[transition.job_id].append(transition)
    judge = _Judge(selected, services, crash_plan, whole_run=wanted is None)
    return [
        *(judge.every_job_finished() if drained else []),
        *judge.effects_exactly_once(),
        *judge.permanent_errors_tried_once(),
        *judge.no_api_misuse(),
        *judge.one_worker_at_a_time(history),
        *judge.steps_forward_once(history),
    ]


async def drain_and_judge(runner: Runner, *, jobs: Iterable[Job | int] | None = None) -> list[str]:
    """Run ``runner`` until the queue drains, then judge the run: every broken invariant, then
    why the run did not finish cleanly (``[]`` when all is well). A function the candidate has
    not written yet comes alone, as "not started"."""
    report = await runner.run()
    unfinished = report_problems(report, runner.solution.path)
    if unfinished and is_not_started(unfinished[0]):
        return unfinished
    crash_plan = runner.crash_plan
    judged = await check_invariants(runner.services, crash_plan, jobs=jobs, drained=not unfinished)
    return judged + unfinished


def report_problems(report: RunReport, solution: Path | None = None) -> list[str]:
    """Why a run did not drain cleanly, as diagnoses; ``[]`` when it did.

    A function the candidate has not written yet is "not started", as everywhere in the grader.
    """
    if report.ok:
        return []
    if solution is not None:
        for error in report.candidate_errors:
            if isinstance(error.error, NotImplementedError):
                return [describe_exception(error.error, solution, error.where)]
    return [f"the run did not finish cleanly: {report.describe()}"]


# -- the judge -------------------------------------------------------------------------------


class Problem(str):
    """A diagnosis (it is the text) that also names the jobs and workers it is about, so that
    the grader can show the timeline behind it (``Kata.explain_problem``)."""

    jobs: tuple[int, ...]
    workers: tuple[str, ...] | None

    def __new__(
        cls, text: str, jobs: Iterable[int], workers: Iterable[str] | None = None
    ) -> Problem:
        problem = super().__new__(cls, text)
        problem.jobs = tuple(jobs)
        problem.workers = tuple(dict.fromkeys(workers)) if workers is not None else None
        return problem


class _Judge:
    """One judgement: the jobs, indexed with what the APIs did for them."""

    def __init__(
        self,
        jobs: Sequence[Job],
        services: Services,
        crash_plan: CrashPlan | None,
        *,
        whole_run: bool,
    ) -> None:
        self.jobs = jobs
        self.ledger: Ledger = services.ledger
        self.seed = services.plan.seed
        self.crash_plan = crash_plan
        self.whole_run = whole_run
        self.by_id = {job.id: job for job in jobs}
        self.by_email: dict[str, list[Job]] = defaultdict(list)
        for job in jobs:
            self.by_email[job.email].append(job)
        self.deliveries: dict[int, list[Delivery]] = defaultdict(list)
        self.stray_deliveries: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in self.ledger.deliveries:
            owner = self._owner(delivery.job_id, delivery.to)
            if owner is not None:
                self.deliveries[owner.id].append(delivery)
            else:
                self.stray_deliveries[delivery.to].append(delivery)
        self.actions: dict[int, list[CrmAction]] = defaultdict(list)
        self.stray_actions: dict[str, list[CrmAction]] = defaultdict(list)
        for action in self.ledger.actions:
            owner = self._owner(action.job_id, action.email)
            if owner is not None:
                self.actions[owner.id].append(action)
            else:
                self.stray_actions[action.email].append(action)
        self.calls: dict[tuple[str, str], list[Call]] = defaultdict(list)
        for call in self.ledger.calls:
            self.calls[(call.service, call.subject)].append(call)
        for made in self.calls.values():
            made.sort(key=lambda c: c.at)

    def _owner(self, job_id: int | None, email: str) -> Job | None:
        """The job an effect belongs to: the one it was made for, or the only one with that
        address (two campaigns may each rightly mail the same customer once)."""
        job = self.by_id.get(job_id) if job_id is not None else None
        if job is not None and job.email == email:
            return job
        same_address = self.by_email.get(email, [])
        return same_address[0] if len(same_address) == 1 else None

    def _crashes_between(self, job_id: int | None, start: float, end: float) -> int:
        return 0 if self.crash_plan is None else self.crash_plan.crashes_between(job_id, start, end)

    # 1. every job finished -----------------------------------------------------------------

    def every_job_finished(self) -> list[str]:
        problems = []
        for job in self.jobs:
            if job.status not in _FINAL:
                held = f", held by {job.worker_id}" if job.status is JobStatus.RUNNING else ""
                problems.append(
                    f"{_job(job)} ended {job.status.value} at step {job.step.value}{held}: every "
                    "job must end completed or failed"
                )
            elif job.status is JobStatus.FAILED and not job.last_error:
                problems.append(
                    f"{_job(job)} failed at step {job.step.value} without a last_error: record why "
                    "a job failed"
                )
        return problems

    # 2. one email, one sentiment, one CRM action -------------------------------------------

    def effects_exactly_once(self) -> list[str]:
        problems = []
        if self.whole_run:
            for email, sent in sorted(self.stray_deliveries.items()):
                problems.append(f"{len(sent)} email(s) went to {email}, who has no job")
            for email, acted in sorted(self.stray_actions.items()):
                problems.append(f"{len(acted)} CRM action(s) went to {email}, who has no job")
        for job in self.jobs:
            sent, acted = self.deliveries.get(job.id, []), self.actions.get(job.id, [])
            if len(sent) > 1:
                problems.append(
                    Problem(
                        f"{_job(job)} was sent {len(sent)} emails: "
                        + ", ".join(f"{d.message_id} by {d.caller}{_key(d.key)}" for d in sent)
                        + _duplicate_cause("send_email", [d.key for d in sent], Step.SEND_EMAIL),
                        [job.id],
                    )
                )
            if len(acted) > 1:
                problems.append(
                    Problem(
                        f"{_job(job)} got {len(acted)} CRM actions: "
                        + ", ".join(f"{a.action_id} by {a.caller}{_key(a.key)}" for a in acted)
                        + _duplicate_cause(
                            "route_customer", [a.key for a in acted], Step.TAKE_ACTION
                        ),
                        [job.id],
                    )
                )
            if job.status is JobStatus.COMPLETED:
                problems += self._completed_properly(job, sent, acted)
        return problems

    def _completed_properly(
        self, job: Job, sent: list[Delivery], acted: list[CrmAction]
    ) -> list[str]:
        problems = []
        if job.step is not Step.DONE:
            problems.append(
                f"{_job(job)} is completed at step {job.step.value}: a job is completed only when "
                "its step reaches done"
            )
        if not sent:
            problems.append(f"{_job(job)} completed, but no email was ever delivered to it")
        elif len(sent) == 1 and job.message_id is None:
            problems.append(
                f"{_job(job)} completed with no message_id, although its email went out as "
                f"{sent[0].message_id!r}: record the id send_email returned before moving on"
            )
        elif len(sent) == 1 and job.message_id != sent[0].message_id:
            problems.append(
                f"{_job(job)} recorded message_id {job.message_id!r}, but the email delivered "
                f"was {sent[0].message_id!r}: record the id send_email returned"
            )
        expected = classify_sentiment(reply_for(self.seed, job.email))
        if job.sentiment not in SENTIMENTS:
            problems.append(
                f"{_job(job)} completed with sentiment {job.sentiment!r}: the analyze step must "
                f"record what analyze_sentiment said ({', '.join(map(repr, SENTIMENTS))})"
            )
        elif job.sentiment != expected:
            problems.append(
                f"{_job(job)} recorded sentiment {job.sentiment!r}, but analyze_sentiment of the "
                f"customer's reply says {expected!r}: analyze the reply to this job's message"
            )
        if not acted:
            problems.append(f"{_job(job)} completed without any CRM action for {job.email}")
        elif len(acted) == 1:
            (action,) = acted
            if job.action_id != action.action_id:
                problems.append(
                    f"{_job(job)} recorded action_id {job.action_id!r}, but the CRM applied "
                    f"{action.action_id!r}: record the id route_customer returned"
                )
            elif job.sentiment in SENTIMENTS and action.sentiment != job.sentiment:
                problems.append(
                    f"{_job(job)} was routed in the CRM as {action.sentiment!r} but recorded "
                    f"sentiment {job.sentiment!r}: route by the sentiment the job recorded"
                )
        return problems

    # 3. a permanent error is tried once ----------------------------------------------------

    def permanent_errors_tried_once(self) -> list[str]:
        problems = []
        for job in self.jobs:
            permanent = invalid_email_reason(job.email) is not None or _PERMANENT in (
                job.last_error or ""
            )
            if not permanent:
                continue
            if job.status is JobStatus.COMPLETED:
                problems.append(
                    f"{_job(job)} is completed although its address is undeliverable "
                    f"({job.email!r} {invalid_email_reason(job.email)})"
                )
                continue
            tries = [
                c
                for c in self.calls.get(("sendgrid", job.email), [])
                if c.operation == "send_email"
            ]
            refused = next((c for c in tries if c.outcome == "invalid"), None)
            if refused is None:
                continue
            # From the first refusal on: a transient error before it (were a 429 ever to come
            # before the address check) is a try the solution rightly repeated.
            tries = [c for c in tries if c.at >= refused.at]
            if len(tries) <= 1:
                continue
            allowed = 1 + self._crashes_between(job.id, refused.at, tries[-1].at)
            if len(tries) > allowed:
                who = ", ".join(sorted({c.caller for c in tries}))
                problems.append(
                    f"{_job(job)} failed for a permanent error, yet send_email was tried "
                    f"{len(tries)} times (by {who}): InvalidEmailError never succeeds — fail the "
                    "job with last_error after the first attempt"
                )
        return problems

    # 4. no call before retry_after, none inside a transaction ------------------------------

    def no_api_misuse(self) -> list[str]:
        problems = []
        for violation in self.ledger.violations:
            if not self._concerns_selected(violation) or self._excused(violation):
                continue
            text = describe_violation(violation)
            if violation.job_id is not None:
                text = Problem(text, [violation.job_id])
            problems.append(text)
        return problems

    def _concerns_selected(self, violation: Violation) -> bool:
        if violation.job_id is not None:
            return violation.job_id in self.by_id
        return self.whole_run or violation.subject in self.by_email

    def _excused(self, violation: Violation) -> bool:
        made = self.calls.get((violation.service, violation.subject), [])
        if violation.kind is ViolationKind.RETRY_AFTER_PERMANENT_ERROR:
            refused = next((c for c in made if c.outcome == "invalid"), None)
            return (
                refused is not None
                and self._crashes_between(violation.job_id, refused.at, violation.at) > 0
            )
        if violation.kind is ViolationKind.RETRY_BEFORE_RETRY_AFTER:
            told = [
                c for c in made if c.outcome == "rate_limited" and c.at + c.duration <= violation.at
            ]
            if not told or violation.job_id is None:
                return False
            latest = max(told, key=lambda c: c.at + c.duration)
            arrived = latest.at + latest.duration
            # Only the harness's lease can put a worker on a job while the one told to wait still
            # should (it crashed before recording the 429, or its claim ran out under it): the
            # new holder cannot know. A rule, not a timing margin: it needs a recovery of this
            # job between the 429 and the early call, and a new holder: another worker, or the
            # same worker restarted after a crash of this job (a process that died forgot the
            # 429; one whose claim merely ran out under it did not).
            recovered = [
                r.at
                for r in self.ledger.recoveries
                if r.job_id == violation.job_id and arrived <= r.at <= violation.at
            ]
            if not recovered:
                return False
            return latest.caller != violation.caller or (
                self._crashes_between(violation.job_id, arrived, max(recovered)) > 0
            )
        return False

    # 5. one worker at a time, and steps only forward ---------------------------------------

    def one_worker_at_a_time(self, history: dict[int, list[JobTransition]]) -> list[str]:
        """While a worker holds a job (from the transition into running until the one out of
        it), every change recorded on the job must still name that worker. Another worker's id
        means one of two mistakes, told apart by who that worker is: one that held the job before
        saved a stale copy back over a correct new claim; one that never held it claimed a job
        that was still running."""
        problems: list[str] = []
        for job in self.jobs:
            holder: str | None = None
            held_before: set[str] = set()
            for t in history.get(job.id, []):
                if (
                    t.old_status is JobStatus.RUNNING
                    and holder
                    and t.worker_id not in (None, holder)
                ):
                    change = (
                        f"{t.old_status.value}/{t.old_step.value} -> "
                        f"{t.new_status.value}/{t.new_step.value}"
                    )
                    if t.worker_id in held_before:
                        problems.append(
                            Problem(
                                _stale_save(job, holder, t.worker_id, change),
                                [job.id],
                                [holder, t.worker_id],
                            )
                        )
                    else:
                        problems.append(
                            Problem(
                                _double_claim(job, holder, t.worker_id, change),
                                [job.id],
                                [holder, t.worker_id],
                            )
                        )
                    break
                if t.new_status is JobStatus.RUNNING and t.old_status is not JobStatus.RUNNING:
                    holder = t.worker_id
                elif t.new_status is not JobStatus.RUNNING:
                    if holder:
                        held_before.add(holder)
                    holder = None
        return problems

    def steps_forward_once(self, history: dict[int, list[JobTransition]]) -> list[str]:
        problems: list[str] = []
        for job in self.jobs:
            seen: set[tuple[Step, Step]] = set()
            for t in history.get(job.id, []):
                if t.old_step == t.new_step:
                    continue
                if _ORDER.index(t.new_step) < _ORDER.index(t.old_step):
                    problems.append(
                        Problem(
                            f"{_job(job)} went backwards from step {t.old_step.value} to "
                            f"{t.new_step.value}: a stale job object was saved over newer "
                            "progress",
                            [job.id],
                        )
                    )
                    break
                if (t.old_step, t.new_step) in seen:
                    problems.append(
                        Problem(
                            f"{_job(job)} advanced from {t.old_step.value} to "
                            f"{t.new_step.value} twice: the advance is not a compare-and-set on "
                            "the current step",
                            [job.id],
                        )
                    )
                    break
                seen.add((t.old_step, t.new_step))
        return problems


def _job(job: Job) -> str:
    return f"job {job.id} ({job.email})"


def _stale_save(job: Job, holder: str, stale: str, change: str) -> str:
    # The claim is not blamed: the job had left running, so the holder's claim took a job it
    # was free to take; the write under the old worker's id is what went wrong.
    return (
        f"{stale} saved a stale copy of {_job(job)} over {holder}'s claim: {stale}'s hold on "
        f"the job had ended and {holder} had claimed it (a correct claim), yet a change was "
        f"then recorded under {stale} ({change}) — saving the whole job object (job.save()) "
        "writes back every field of the old copy, worker_id included: re-read the job, and "
        "write only what the step changed with a compare-and-set (UPDATE ... WHERE id = ? AND "
        "step = <the step you ran> AND status = 'running'), changing nothing when no row matches"
    )


def _double_claim(job: Job, holder: str, intruder: str, change: str) -> str:
    return (
        f"{_job(job)} was held by {holder} when a change was recorded under {intruder} while it "
        f"was still running ({change}): two workers held it at once, {intruder} having taken "
        "a job that was not pending — a claim must only take a pending job (UPDATE ... WHERE "
        "status = 'pending', or SELECT ... FOR UPDATE SKIP LOCKED)"
    )


def _key(key: str | None) -> str:
    return " without a key" if key is None else f" with key {key!r}"


def _duplicate_cause(operation: str, keys: list[str | None], step: Step) -> str:
    if all(key is None for key in keys):
        return (
            f" — {operation} was called without an idempotency key, so a retry does it again: "
            f"pass a key derived from the job and the step (e.g. f'job-{{job.id}}-{step.value}')"
        )
    return (
        f" — different idempotency keys for one job's step: derive the key from the job and the "
        f"step (e.g. f'job-{{job.id}}-{step.value}'), never from the attempt, the worker or a uuid"
    )
