"""The interview's design part, on paper: ``design.md`` beside the solution, then a comparison.

When the design part starts, ``dev`` writes ``design.md`` next to ``candidate/solution.py`` (once:
an existing file is the candidate's) with the part's two questions and a prompt under each for
what the answer should cover. When the part ends, the board shows the points a strong answer
makes, for the candidate to compare with what they wrote. Nothing is scored, and no keyword is
looked for: the notes go to the session record as written, and the report shows them beside the
same points.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["NOTES_NAME", "STRONG_POINTS", "TEMPLATE", "DesignNotes", "Shown"]

NOTES_NAME = "design.md"

TEMPLATE = """\
# Design (15 minutes)

Answer the two questions below in your own words: lists and sketches are fine. Nothing here is
graded; when the design part ends the board shows what a strong answer covers, to compare.

## 1. What tables and data structures do you need?

- Tables, their columns and types; the states a job goes through.
- Indexes: which queries must be fast (the claim, the duplicate check), and which index serves each.
- Constraints that keep the data right even when the code is wrong.

(your answer)

## 2. What are the components and how do they interact?

- Who creates the jobs, who claims them (claimers), who runs them (workers), and how they talk
  to each other and to the external APIs (email, sentiment, CRM).
- How a job stuck in `running` gets back to the queue (lease recovery).
- What happens when a worker dies mid-job, and when an API fails (transient, permanent, slow).
- How 50,000 jobs are created for one campaign: statements, round trips, transactions.

(your answer)
"""

#: What a strong answer covers, part by part: shown when the design part ends.
STRONG_POINTS: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "Tables and indexes",
        (
            "jobs: id, campaign_id, email, status (pending, running, completed, failed), step, "
            "attempts, run_after, worker_id, claimed_at (the lease), message id, last error",
            "an index that serves the claim: (status, run_after, id), or a partial index on "
            "pending jobs",
            "a unique (campaign_id, email): duplicates and re-runs are refused by the database, "
            "not by a check the code makes first",
            "campaigns as their own table; timestamps in UTC",
        ),
    ),
    (
        "Components and how they talk",
        (
            "an API that creates a campaign's jobs in one transaction; workers that claim, "
            "run the steps and write the outcome",
            "a claim that is one atomic step: FOR UPDATE SKIP LOCKED in a short transaction, or "
            "an UPDATE ... WHERE status = 'pending' that re-checks the row (compare-and-set)",
            "API calls made outside any transaction, with an idempotency key per job and step",
            "each step advanced with a compare-and-set on (step, status), so a stale worker's "
            "write changes nothing",
        ),
    ),
    (
        "When a worker dies or an API fails",
        (
            "a lease: claimed_at renewed while working; a sweeper returns expired claims to "
            "pending, and the next attempt must not send a second email (idempotency keys)",
            "transient errors (429, 5xx, timeouts) retried with backoff that honours "
            "retry_after, within one budget of attempts; permanent errors fail at once",
            "the job's state in the database, never in a worker's memory",
        ),
    ),
    (
        "50,000 jobs",
        (
            "batched multi-row INSERTs (a few hundred rows each, under the parameter limit): "
            "a few hundred round trips, not 50,000 and not one giant statement",
            "all batches in one transaction (all or nothing), and ON CONFLICT DO NOTHING so a "
            "re-run creates nothing twice",
        ),
    ),
    (
        "Observability",
        (
            "counts by status and step, the age of the oldest pending job, attempts and last "
            "error per job, the pool's use: what the incident drills' dashboard shows",
        ),
    ),
)


@dataclass(frozen=True)
class Shown:
    """What the board shows in its panel."""

    title: str
    body: str


class DesignNotes:
    """The design notes of the solution at ``solution``: ``design.md`` beside it."""

    def __init__(self, solution: Path) -> None:
        self.path = solution.with_name(NOTES_NAME)

    def offer(self) -> Shown:
        """Write the template (unless the file exists) and say where it is."""
        if not self.path.exists():
            self.path.write_text(TEMPLATE, encoding="utf-8")
        return Shown(
            "design: 15 minutes, on paper",
            f"Write your answers in **{self.path.name}** beside your solution:\n\n"
            "1. What tables and data structures do you need?\n"
            "2. What are the components and how do they interact?\n\n"
            "The file has a prompt under each question. Nothing is scored: when the part "
            "ends, this panel shows what a strong answer covers.",
        )

    def read(self) -> str | None:
        try:
            text = self.path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            return None
        return text if text.strip() else None

    def compare(self) -> Shown:
        return Shown("design: what a strong answer covers (compare with yours)", strong_points())


def strong_points() -> str:
    """The points, as Markdown."""
    parts = []
    for heading, points in STRONG_POINTS:
        parts.append(f"**{heading}**\n\n" + "\n".join(f"- {point}" for point in points))
    return "\n\n".join(parts)
