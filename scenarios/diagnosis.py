"""What a drill knows about its own flaw, declared once per drill in ``diagnoses/<slug>.py``.

A ``Diagnosis`` holds, for one incident: the question asked after the run (in each backend's
words), whether a run shows the flaw (``signature``) and whether a fix cleared the symptom the
page names (``symptom``), the explanation quoted from a run's record, why each wrong answer does
not fit the run (``refutations``), and which jobs' histories a record keeps (``telling``). The
catalogue (``catalog``) pairs each with its incident; every feature reads a drill from there.
Nothing here measures: a diagnosis reads the record of a run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from .quiz import Choice, Question

if TYPE_CHECKING:
    from .incident import Incident
    from .record import RunRecord

__all__ = ["Diagnosis", "Explanation", "JobSeen", "Verdict", "ranked_by_default"]


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


@dataclass(frozen=True)
class JobSeen:
    """What a run's ledger and runner saw of one job, for choosing the histories to keep."""

    #: Emails delivered for it.
    copies: int = 0
    #: API calls made for it while a transaction was open, and the seconds they took.
    calls_in_transaction: int = 0
    seconds_in_transaction: float = 0.0
    #: The types of the exceptions its code raised to the runner.
    failures: tuple[str, ...] = ()
    #: How often the lease recovery returned it to the queue.
    recoveries: int = 0
    #: How often a worker died running it.
    crashes: int = 0
    #: Whether the counting recovery failed it.
    given_up: bool = False


def ranked_by_default(job: JobSeen) -> tuple[float, str]:
    """How telling a job is when the drill has nothing more specific to say (higher first), and
    why it was kept; 0 leaves it out."""
    if job.failures:
        kinds = ", ".join(sorted(set(job.failures)))
        return 5 + len(job.failures), f"raised {kinds}"
    if job.recoveries:
        return 1 + job.recoveries, "handed to another worker after its lease expired"
    return 0, ""


Refutation = Callable[["RunRecord"], str]


@dataclass(frozen=True, kw_only=True)
class Diagnosis:
    """One incident's question, verdicts, explanation and refutations."""

    incident: Incident
    #: The question in PostgreSQL's words; the letters and the right one are the same on SQLite.
    question: Question
    #: The choices SQLite's wording changes (its one lock is the database's write lock).
    sqlite_choices: Mapping[str, str] = field(default_factory=dict)
    sqlite_prompt: str | None = None
    #: Whether a run shows the flaw; the second run is the fix on the same load, when the
    #: signature needs one to compare with (``Incident.needs_baseline``).
    signature: Callable[[RunRecord, RunRecord | None], Verdict]
    #: Whether a fixed run (the second) still shows the symptom the page names.
    symptom: Callable[[RunRecord, RunRecord], Verdict]
    #: The root cause, quoted from a watched run (and its fixed run, when there is one).
    explain: Callable[[RunRecord, RunRecord | None], Explanation]
    #: For each wrong letter, why that answer does not fit the run.
    refutations: Mapping[str, Refutation]
    #: How telling a job is for this incident, and why it was kept (``ranked_by_default``).
    telling: Callable[[JobSeen], tuple[float, str]] = ranked_by_default

    def __post_init__(self) -> None:
        wrong = set(self.question.letters) - {self.question.right}
        if set(self.refutations) != wrong:
            raise ValueError(
                f"incident {self.incident.number}: refutations for {sorted(self.refutations)}, "
                f"the wrong answers are {sorted(wrong)}"
            )

    @property
    def number(self) -> int:
        return self.incident.number

    def question_for(self, dialect: str) -> Question:
        """The question in the words of ``dialect``."""
        if dialect != "sqlite":
            return self.question
        return replace(
            self.question,
            prompt=self.sqlite_prompt or self.question.prompt,
            choices=tuple(
                Choice(choice.letter, self.sqlite_choices.get(choice.letter, choice.text))
                for choice in self.question.choices
            ),
        )
