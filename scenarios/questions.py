"""Each incident's multiple-choice diagnosis: its question, its choices and its rubric.

``question_for(n, dialect)`` is the question asked after incident ``n``, in the words of the
backend that ran (SQLite has a write lock where PostgreSQL has row locks); ``QUESTIONS[n]`` is
PostgreSQL's wording, and the letters and the right one are the same on both. Whether a run shows
the flaw is ``signatures``; what it shows, quoted from the run, is ``explanations``; why a wrong
answer does not fit the run is ``refutations``.
"""

from __future__ import annotations

from dataclasses import replace

from .quiz import Choice, Point, Question

__all__ = ["QUESTIONS", "question_for"]

SLOW_SHARE = 0.25


def _question(prompt: str, right: str, *choices: str, rubric: tuple[Point, ...] = ()) -> Question:
    return Question(
        prompt=prompt,
        choices=tuple(Choice("ABCDE"[i], text) for i, text in enumerate(choices)),
        right=right,
        rubric=rubric,
    )


_SEND_OUTSIDE = Point(
    "send the email outside any transaction",
    r"outside|after (the )?commit|commit (first|before)|not (in|inside|within|during) (a|the|any)"
    r" ?(db |database )?(transaction|txn|tx)|no (api |network |http )?calls? (in|inside)|"
    r"(move|take) the (send|email|api call)|separate",
)
_STABLE_KEY = Point(
    "an idempotency key per job and step, the same on every retry and worker",
    r"idempot|stable key|same key|deterministic key|key per job|job.?id.*key|key.*job.?id",
)

QUESTIONS: dict[int, Question] = {
    1: _question(
        "The workers are healthy, yet the campaign moves at a fraction of what twenty workers "
        "should do. What is the root cause?",
        "B",
        "SendGrid is slow: its latency caps how many jobs the workers can finish.",
        "The claim holds the job's row lock (SELECT ... FOR UPDATE) - its transaction - while "
        "it calls the email API, so the other workers queue behind that lock to claim.",
        "The connection pool is too small for twenty workers, so they wait for connections.",
        "The pending-jobs index is missing, so every claim scans the whole jobs table.",
        "Workers crash and their jobs wait for the lease to expire before anyone retries them.",
        rubric=(
            Point(
                "claim in one short statement (UPDATE ... RETURNING; SKIP LOCKED on PostgreSQL)",
                r"one (short )?statement|single (update|statement|query)|update.*returning|"
                r"returning|skip locked|atomic|short(er)? (claim|transaction)",
            ),
            _SEND_OUTSIDE,
            _STABLE_KEY,
        ),
    ),
    2: _question(
        "Customers received the campaign email more than once. What is the root cause?",
        "D",
        "SendGrid redelivers on its side after a timeout: nothing in our code can prevent it.",
        "The campaign was queued twice, so some customers have two jobs.",
        "Two workers claim the same pending job because the claim is not atomic.",
        "Jobs outlive their lease with no heartbeat, so a running job is handed to a second "
        "worker, which sends again with a fresh idempotency key per request.",
        "The analyze step re-sends the email when it cannot find the reply.",
        rubric=(
            _STABLE_KEY,
            Point(
                "stop handing live jobs out: a heartbeat, or a lease longer than the slowest job",
                r"heart ?beat|lease|renew|extend",
            ),
        ),
    ),
    3: _question(
        "During the launch burst the workers log PoolTimeout errors and the p99 latency of "
        "claiming a job spikes. What is the root cause?",
        "C",
        "The database is overloaded: statements are slow, so connections stay busy.",
        "The pool is simply too small: ten connections for twenty workers.",
        "The email step keeps a transaction - and its pooled connection - open across the "
        "SendGrid call, so connections sit idle while the other workers wait for one.",
        "A connection leaks on an error path and is never returned to the pool.",
        "The claim query lacks SKIP LOCKED, so claimers block one another.",
        rubric=(
            _SEND_OUTSIDE,
            _STABLE_KEY,
            Point(
                "not a bigger pool: every extra connection would sit idle during sends too",
                r"(bigger|larger|increase|raise|grow|more).{0,20}(pool|connections)|"
                r"pool.{0,12}(bigger|larger|size)",
                warns=True,
            ),
        ),
    ),
}

#: What changes on SQLite: its only lock is the database's write lock, taken by BEGIN IMMEDIATE.
_SQLITE_CHOICES: dict[int, dict[str, str]] = {
    1: {
        "B": "The claim holds SQLite's write lock - its BEGIN IMMEDIATE transaction - while it "
        "calls the email API, so the other workers queue behind that lock to claim.",
    },
    3: {
        "C": "The email step keeps a transaction - its pooled connection and SQLite's write lock "
        "- open across the SendGrid call, so connections sit idle while the other workers wait "
        "for one, or for the lock.",
        "E": "The claim is not one atomic statement, so claimers block one another.",
    },
}
_SQLITE_PROMPTS = {
    3: "During the launch burst the workers log PoolTimeout and 'database is locked' errors, and "
    "the p99 latency of claiming a job spikes. What is the root cause?",
}


def question_for(number: int, dialect: str) -> Question:
    """Incident ``number``'s question in the words of ``dialect``."""
    question = QUESTIONS[number]
    if dialect != "sqlite":
        return question
    changed = _SQLITE_CHOICES.get(number, {})
    return replace(
        question,
        prompt=_SQLITE_PROMPTS.get(number, question.prompt),
        choices=tuple(
            Choice(choice.letter, changed.get(choice.letter, choice.text))
            for choice in question.choices
        ),
    )
