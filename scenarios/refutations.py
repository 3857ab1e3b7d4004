"""Why a wrong answer does not fit the run that was watched.

A debrief that only proves the right answer leaves the candidate's own answer standing: "two
workers sent to the same customer" reads like support for "the claim is not atomic". So each
wrong choice of each incident has its refutation, declared with the drill's diagnosis
(``diagnoses/<slug>.py``) and quoted from the run's record (the board's figures and the facts
taken from the ledger when it ended): what that answer predicts, and what the run shows instead.
"""

from __future__ import annotations

from .catalog import diagnosis_of
from .record import RunRecord

__all__ = ["why_not"]


def why_not(r: RunRecord, letter: str) -> str | None:
    """Why choice ``letter`` of the run's incident does not fit the run (None: the right one)."""
    refute = diagnosis_of(r.incident).refutations.get(letter.strip().upper())
    return refute(r) if refute is not None else None
