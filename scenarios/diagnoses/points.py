"""The rubric points several drills' questions share: what a good "what would you change?" says."""

from __future__ import annotations

from ..quiz import Point

__all__ = ["SEND_OUTSIDE", "STABLE_KEY"]

SEND_OUTSIDE = Point(
    "send the email outside any transaction",
    r"outside|after (the )?commit|commit (first|before)|not (in|inside|within|during) (a|the|any)"
    r" ?(db |database )?(transaction|txn|tx)|no (api |network |http )?calls? (in|inside)|"
    r"(move|take) the (send|email|api call)|separate",
)
STABLE_KEY = Point(
    "an idempotency key per job and step, the same on every retry and worker",
    r"idempot|stable key|same key|deterministic key|key per job|job.?id.*key|key.*job.?id",
)
