"""Task G's verdicts, read from what a drain recorded (``send_drain``): each a diagnosis in the
candidate's terms, or None.

The rule a limiter keeps is the account's: at most ``BURST`` sends at once, and
``SEND_RATE_PER_SECOND`` a second after that. Counted from a moment the harness knows (when it
set the account up, or when a 429's pause ends), the k-th reservation may return no earlier than
``max(0, k - BURST)`` intervals later. A busy machine only ever makes a reservation return later,
never earlier, so that bound never fails a limiter that keeps the rule, however loaded the
machine; and SendGrid's bucket is sized so that it never refuses one either (``world.account``).
Only the throughput is a bound the other way, and it leaves out the time the process was not
given (``Stalls``) and the last stragglers.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable

from ..world.account import BURST, SEND_RATE_PER_SECOND
from .send_drain import INTERVAL, DrainLog, Reservation, Start

__all__ = [
    "BULK",
    "EARLY",
    "FIRST_ANSWER_THROUGHPUT",
    "LONGEST_WAIT",
    "MAX_STATEMENTS",
    "POLLED",
    "REFUSALS_ALLOWED",
    "THROUGHPUT",
    "judge_drain",
    "polling",
    "too_early",
]

#: 429s a drain may meet: a limiter that keeps the rule meets none (the bucket is sized so).
REFUSALS_ALLOWED = 2
#: Statements a worker alone on the account may make in one reservation, however long it waits
#: (``BEGIN`` and ``COMMIT`` count). Under contention a compare-and-set may be tried again: each
#: retry follows another worker's success, so that is not held against it.
MAX_STATEMENTS = 6
#: Seconds one reservation may wait, however many workers are ahead of it: twenty at 50 a
#: second take 0.4 s, and a limiter that books in a transaction on SQLite keeps a worker waiting
#: up to 1.6 s while SQLite hands its lock out to four processes at once (measured under load).
LONGEST_WAIT = 5.0
#: The share of SEND_RATE_PER_SECOND the drain in OS processes must reach over the first
#: ``BULK`` of its sends (the last stragglers left out)...
THROUGHPUT = 0.9
BULK = 0.8
#: ... and the shorter drain of the fast tier (a first answer: twenty workers arriving at once
#: weigh more in 24 sends than in 80).
FIRST_ANSWER_THROUGHPUT = 0.5
#: How early a reservation may return and still count as on time: clocks read in two places.
EARLY = 0.002


def allowed(k: int, start: float) -> float:
    """The earliest moment the k-th (1-based) reservation counted from ``start`` may return."""
    return start + max(0, k - BURST) * INTERVAL


def too_early(granted: Iterable[float], start: float) -> tuple[int, float, float] | None:
    """The reservation that came most before its turn, counted from ``start``: (k, when it
    returned, how early), or None when every one kept the rule."""
    worst: tuple[int, float, float] | None = None
    for k, at in enumerate(sorted(granted), 1):
        early = allowed(k, start) - at
        if early > EARLY and (worst is None or early > worst[2]):
            worst = (k, at, early)
    return worst


def _allowed_count(seconds: float) -> int:
    return BURST + int(seconds * SEND_RATE_PER_SECOND + 1e-9)


def _by(reservations: Iterable[Reservation], key: str) -> dict[str, list[Reservation]]:
    found: dict[str, list[Reservation]] = defaultdict(list)
    for reservation in reservations:
        found[getattr(reservation, key)].append(reservation)
    return found


def _each_keeps_the_rate(groups: dict[str, list[Reservation]]) -> bool:
    return len(groups) > 1 and all(
        too_early([r.returned for r in mine], min(r.called for r in mine)) is None
        for mine in groups.values()
    )


def over_rate(log: DrainLog, start: Start, *, processes: str) -> str | None:
    """429s beyond ``REFUSALS_ALLOWED``, or reservations before their turn. ``processes``
    names the workers' processes as the candidate should read them ("each process")."""
    refused = sum(1 for s in log.sends if s.refused)
    early = too_early([r.returned for r in log.reservations], start.free_at)
    if refused <= REFUSALS_ALLOWED and early is None:
        return None
    said = (
        f"SendGrid answered 429 to {refused} of {len(log.sends)} sends"
        if refused
        else f"SendGrid answered {len(log.sends)} sends"
    )
    if early is not None:
        k, at, _ = early
        seconds = at - start.free_at
        said += (
            f"; {k} reservations had returned {max(seconds, 0):.3f} s after the start, where "
            f"{SEND_RATE_PER_SECOND:g} a second allows {_allowed_count(seconds)} (a burst of "
            f"{BURST}, then one every {INTERVAL * 1000:g} ms)"
        )
    groups = _by(log.reservations, "group")
    if _each_keeps_the_rate(groups):
        return (
            f"{said} — {processes} kept to {SEND_RATE_PER_SECOND:g} sends a second on its "
            f"own, so the {len(groups)} of them together sent up to {len(groups)} times the "
            "account's rate: the limit is the whole account's, so keep the limiter's state in "
            "the database (send_rate or send_slots), where the workers of every process share "
            "it, never in the process's memory"
        )
    workers = _by(log.reservations, "worker")
    if _each_keeps_its_own_pace(log.reservations) and _each_keeps_the_rate(workers):
        return (
            f"{said} — each worker kept to {SEND_RATE_PER_SECOND:g} sends a second on its own "
            f"(every reservation waited {INTERVAL * 1000:g} ms), so {len(workers)} workers sent "
            f"up to {len(workers)} times the account's rate: the rate is shared by every worker "
            "of every process: give each send its own moment in the database, "
            "1 / SEND_RATE_PER_SECOND after the one before, and wait for it"
        )
    return (
        f"{said} — reserve_send_slot lets workers go faster than the account's rate: give "
        "each send its own moment in the database, 1 / SEND_RATE_PER_SECOND after the one "
        "before, and wait for it (or take a token from a bucket that refills at that rate; a "
        f"token bucket must hold at most {BURST} tokens: a full bucket of a second's sends lets "
        "twenty workers go at once)"
    )


def _each_keeps_its_own_pace(reservations: list[Reservation]) -> bool:
    """Whether the workers paced themselves, each on its own: no reservation asked the
    database anything (so none could know of the others), and every one of them waited an
    interval at least, even the first of twenty that asked at once (in a shared queue the
    first goes at once)."""
    if not reservations or any(r.statements for r in reservations):
        return False
    return min(r.returned - r.called for r in reservations) >= INTERVAL - EARLY


def polling(reservation: Reservation) -> str | None:
    """A lone worker's reservation that made more than ``MAX_STATEMENTS`` statements."""
    if reservation.statements <= MAX_STATEMENTS:
        return None
    return (
        f"{reservation.worker}, alone on the account, made {reservation.statements} statements "
        f"in one reservation while it waited {reservation.returned - reservation.called:.2f} s "
        f"for its moment, where {MAX_STATEMENTS} is the most — the worker asks the database "
        "again and again while it waits (polling): book the send's moment in one write (an "
        "UPDATE ... RETURNING, a token bucket that may go below zero, a row of send_slots), "
        "then sleep until it without asking again"
    )


def starvation(log: DrainLog) -> str | None:
    """A reservation that waited longer than ``LONGEST_WAIT``."""
    if not log.reservations:
        return None
    worst = max(log.reservations, key=lambda r: r.returned - r.called)
    waited = worst.returned - worst.called
    if waited <= LONGEST_WAIT:
        return None
    passed = sum(
        1
        for r in log.reservations
        if r.worker != worst.worker and worst.called < r.called and r.returned < worst.returned
    )
    return (
        f"{worst.worker} waited {waited:.2f} s for one reservation while {passed} reservations "
        f"asked for after it went ahead of it, where no worker may wait more than "
        f"{LONGEST_WAIT:g} s (twenty workers ahead of it take "
        f"{20 * INTERVAL:.1f} s) — the limiter starves a worker: serve them in turn (a worker "
        "that loses a race should book the next moment, not back off and ask again later)"
    )


def too_slow(log: DrainLog, start: Start, share: float = THROUGHPUT) -> str | None:
    """A rate under ``share`` x the account's: the first ``BULK`` of the drain's sends over
    the time from the start to the last of them (its time the middle of three sends, so that
    one late send does not move it), each send's time less the time its process had been
    stalled before it. The last stragglers (a worker that lost a lock to the others a few
    times while twenty arrived at once) are left out."""
    delivered = sorted(s.at - s.stalled for s in log.sends if not s.refused)
    bulk = math.ceil(BULK * len(delivered))
    if bulk < 2 or bulk >= len(delivered):
        return None
    seconds = sorted(delivered[bulk - 2 : bulk + 1])[1] - start.free_at
    rate = bulk / seconds if seconds > 0 else math.inf
    if rate >= share * SEND_RATE_PER_SECOND:
        return None
    return (
        f"{bulk} of the drain's {len(delivered)} sends took {seconds:.2f} s: {rate:.0f} a "
        f"second, where the account allows {SEND_RATE_PER_SECOND:g} and a limiter must reach "
        f"{share * SEND_RATE_PER_SECOND:g} — reserve_send_slot holds workers back longer "
        "than the rate needs: wait exactly until the send's moment (not a whole second, not "
        "rounded up, and a bucket must keep the fractions of a token it refills)"
    )


def judge_drain(
    log: DrainLog, start: Start, *, processes: str, throughput: float = THROUGHPUT
) -> str | None:
    """The first thing wrong with a drain, most fundamental first. A drain that starved a
    worker or fell short of the rate while its workers made many statements a reservation is
    told as the polling it is: every waiting worker's statements slow the others down."""
    if problem := over_rate(log, start, processes=processes):
        return problem
    slow = starvation(log) or too_slow(log, start, throughput)
    if slow is None:
        return None
    return _polled(log, slow.split(" — ", 1)[0]) or slow


#: Statements a reservation of a drain made on average, above which a slow drain is polling's
#: doing (twenty workers starting at once may make an optimistic limiter retry a few times).
POLLED = 3 * MAX_STATEMENTS


def _polled(log: DrainLog, what: str) -> str | None:
    if not log.reservations:
        return None
    average = sum(r.statements for r in log.reservations) / len(log.reservations)
    if average <= POLLED:
        return None
    most = max(log.reservations, key=lambda r: r.statements)
    return (
        f"{what}, and reserve_send_slot made {average:.0f} statements per reservation on "
        f"average ({most.worker} made {most.statements} in one) — the workers ask the "
        "database again and again while they wait (polling), and every waiting worker's "
        "statements slow the others down: book the send's moment in one write, then sleep "
        "until it without asking again"
    )
