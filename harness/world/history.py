"""What happened, in order: the statements each worker sent (with the line of its own code that
sent them), its API calls, crashes and lease recoveries; cut down to a *timeline* of the few
events behind a race.

A concurrency verdict names the mistake ("job 41 was claimed by worker-3 and worker-11"); its
timeline shows it, as the tools engineers use for races do (frontrun's conflicting accesses,
a Jepsen history)::

      0.014 s  worker-1   solution.py:16
                SELECT id FROM jobs WHERE status = 'pending' AND run_after <= ? ORDER BY id
                  LIMIT 1 → job 4
      0.020 s  worker-2   the harness
                UPDATE jobs SET status = 'running', worker_id = ?, claimed_at = ? WHERE id = ?
                  → job 4, 1 row
      0.025 s  worker-1   solution.py:24
                UPDATE jobs SET status = ?, worker_id = ?, claimed_at = ? WHERE id = ? → job 4,
                  1 row

``History`` observes a database (``Database.observers``, called for every statement before any
hook, so a read is on record before a choreography pauses its worker) and keeps a bounded deque:
memory stays flat on the 50,000-row test. API calls, crashes and recoveries are already in the
ledger and the crash plan; ``timeline()`` merges them in.
"""

from __future__ import annotations

import re
import textwrap
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from ..ownership import code_site

if TYPE_CHECKING:
    from ..sql.database import Database
    from .crashes import Crash
    from .ledger import Call, Recovery

__all__ = ["Event", "History", "Timeline"]

#: Events kept per history: enough for every race the grader provokes, bounded for the big loads.
LIMIT = 20_000
#: Job ids kept per statement (a harness check may read a thousand rows; a race is about one).
_IDS_KEPT = 50
#: Events of a timeline: the conflict is in the last events, the setting in the first.
_TIMELINE_LINES = 12
_INDENT = " " * 14
#: The name asyncio gives a task that is no worker: the harness's own test code.
_TASK_NAME = re.compile(r"^Task-\d+$")


@dataclass(frozen=True, slots=True)
class Event:
    """One thing a worker did (or the harness did to it), at loop time ``at``."""

    at: float
    worker: str
    kind: str  # "sql" | "call" | "given" | "crash" | "recovery"
    what: str
    jobs: tuple[int, ...] = ()
    #: "solution.py:14 in claim_next_job()": the line of the worker's own code; None: the
    #: harness's (a choreography playing another worker, the lease, a check).
    site: str | None = None

    def to_json(self, start: float) -> dict[str, Any]:
        return {
            "at": round(self.at - start, 6),
            "worker": self.worker,
            "kind": self.kind,
            "what": self.what,
            "jobs": list(self.jobs),
            "site": self.site,
        }


class History:
    """The statements run on one database, as events, oldest first (at most ``limit``)."""

    def __init__(self, limit: int = LIMIT) -> None:
        self.events: deque[Event] = deque(maxlen=limit)
        self.start: float | None = None

    def attach(self, database: Database) -> None:
        database.observers.append(self.statement)

    def detach(self, database: Database) -> None:
        if self.statement in database.observers:
            database.observers.remove(self.statement)

    def statement(
        self,
        at: float,
        worker: str,
        sql: str,
        params: Sequence[Any],
        rows: list[dict[str, Any]] | None,
        rowcount: int | None,
        error: BaseException | None = None,
    ) -> None:
        """Record one statement (called by ``Database.run_on``, synchronously)."""
        if self.start is None:
            self.start = at
        shape = _shape(sql)
        jobs: list[int] = []
        if shape.on_jobs:
            jobs += [
                int(params[i]) for i in shape.job_params if i < len(params) and _is_id(params[i])
            ]
            for row in rows or ():
                if len(jobs) >= _IDS_KEPT:
                    break
                value = row.get("id")
                if isinstance(value, int) and _is_id(value) and value not in jobs:
                    jobs.append(value)
        what = shape.text
        if error is not None:
            what += f" → {type(error).__name__}: {_first_line(error)}"
        elif shape.writes:
            what += f" → {_ids(jobs, rows)}{rowcount} row{'' if rowcount == 1 else 's'}"
        elif shape.on_jobs:
            what += f" → {_ids(jobs, rows, empty='no row') or 'no row'}".rstrip(", ")
        self.events.append(Event(at, worker, "sql", what, tuple(dict.fromkeys(jobs)), code_site()))

    def note(self, at: float, worker: str, what: str, jobs: Iterable[int] = ()) -> None:
        """Record something the harness did for a worker (handed it a job, say)."""
        if self.start is None:
            self.start = at
        self.events.append(Event(at, worker, "given", what, tuple(jobs)))

    def timeline(
        self,
        jobs: Iterable[int],
        workers: Iterable[str] | None = None,
        *,
        calls: Iterable[Call] = (),
        crashes: Iterable[Crash] = (),
        recoveries: Iterable[Recovery] = (),
        durations: bool = False,
    ) -> Timeline:
        """The events that concern ``jobs``, by ``workers`` (all workers when None), with the
        transactions they happened in, the API calls, crashes and recoveries of those jobs
        (``durations``: with how long each call took, as a drill tells it)."""
        wanted, who = set(jobs), set(workers) if workers is not None else None

        def by(worker: str) -> bool:
            return who is None or worker in who

        merged = list(self.events)
        merged += [_call_event(c, durations) for c in calls if c.job_id in wanted and by(c.caller)]
        merged += [
            Event(c.at, c.caller, "crash", f"crashed ({c.point})", (c.job_id,))
            for c in crashes
            if c.job_id in wanted
        ]
        merged += [
            Event(
                r.at,
                "harness",
                "recovery",
                f"lease expired: job {r.job_id} back to pending"
                + (f" (held by {r.worker})" if r.worker else ""),
                (r.job_id,),
            )
            for r in recoveries
            if r.job_id in wanted
        ]
        merged.sort(key=lambda e: e.at)
        chosen: list[Event] = []
        open_tx: dict[str, Event] = {}
        shown_tx: set[int] = set()
        for event in merged:
            statement = event.what.split(" → ", 1)[0] if event.kind == "sql" else ""
            if statement in _BEGINS:
                open_tx[event.worker] = event
                continue
            if statement in _ENDS:
                begin = open_tx.pop(event.worker, None)
                if begin is not None and id(begin) in shown_tx:
                    chosen.append(event)
                continue
            if not (wanted & set(event.jobs)) or not (by(event.worker) or event.kind != "sql"):
                continue
            if event.kind == "sql" and event.site is None and not _changes_rows(statement):
                continue  # the harness creating the job, or checking it: not part of the race
            begin = open_tx.get(event.worker)
            if begin is not None and id(begin) not in shown_tx:
                shown_tx.add(id(begin))
                chosen.append(begin)
            chosen.append(event)
        chosen.sort(key=lambda e: e.at)
        start = self.start if self.start is not None else (chosen[0].at if chosen else 0.0)
        return Timeline(chosen, start)


@dataclass
class Timeline:
    """A few events in order, to be read without opening the harness."""

    events: list[Event]
    start: float

    def __bool__(self) -> bool:
        return bool(self.events)

    @property
    def interleaved(self) -> bool:
        """Whether it shows a race: a worker acted on the job, another (or the harness, playing
        one) acted in between, then the first acted again; or a crash or a lease recovery."""
        if any(event.kind in ("crash", "recovery") for event in self.events):
            return True
        turns: list[str] = []
        for event in self.events:
            if not turns or turns[-1] != event.worker:
                turns.append(event.worker)
        return len(turns) != len(set(turns))

    def lines(self, width: int = 100) -> list[str]:
        """Each event as a line of when, who and where (the line of its code, or the harness),
        then what it did, wrapped at ``width``; a long middle is elided."""
        shown = _compact(self.events)
        skipped = 0
        if len(shown) > _TIMELINE_LINES:
            skipped = len(shown) - _TIMELINE_LINES
            shown = shown[:3] + shown[3 + skipped :]
        lines = []
        for index, event in enumerate(shown):
            if skipped and index == 3:
                lines.append(f"{_INDENT}… {skipped} more event{'s' if skipped > 1 else ''} …")
            where = _short_site(event.site) if event.site else "the harness"
            who = "harness" if _TASK_NAME.match(event.worker) else event.worker
            lines.append(f"  {event.at - self.start:7.3f} s  {who:<10} {where}")
            lines += textwrap.wrap(
                event.what,
                max(40, width),
                initial_indent=_INDENT,
                subsequent_indent=_INDENT + "  ",
                break_long_words=False,
                break_on_hyphens=False,
            )
        return lines

    def to_json(self, start: float | None = None) -> list[dict[str, Any]]:
        """The events, their times counted from ``start`` (default: the history's start)."""
        origin = self.start if start is None else start
        return [event.to_json(origin) for event in self.events]


# --- statements ----------------------------------------------------------------------------------

_BEGINS = {"BEGIN", "BEGIN IMMEDIATE", "BEGIN TRANSACTION"}
_ENDS = {"COMMIT", "ROLLBACK"}
_STRINGS = re.compile(r"'(?:[^']|'')*'")
_JOB_COLUMN = re.compile(r"\b(?:jobs\.)?(?:id|job_id)\s*(?:=|<=|>=|<|>|IN\s*\(\s*|,\s*)\s*$", re.I)
_ON_JOBS = re.compile(r"\b(?:FROM|UPDATE|INTO|JOIN)\s+jobs\b", re.I)
_WRITES = re.compile(r"^\s*(?:INSERT|UPDATE|DELETE)\b", re.I)


@dataclass(frozen=True)
class _Shape:
    text: str
    on_jobs: bool
    writes: bool
    job_params: tuple[int, ...]


def _shape(sql: str) -> _Shape:
    """What a statement's text says once for all its runs: short statements repeat, and are
    cached; a long one (a 5,000-row INSERT) is kept as its first characters and its length."""
    if len(sql) <= _LONG:
        return _short_shape(sql)
    text = " ".join(sql[:_LONG].split())
    bare = _STRINGS.sub(lambda m: "_" * len(m.group()), text)
    on_jobs, writes = bool(_ON_JOBS.search(bare)), bool(_WRITES.match(bare))
    return _Shape(f"{text[:300]} ... ({len(sql):,} characters)", on_jobs, writes, ())


@lru_cache(maxsize=1024)
def _short_shape(sql: str) -> _Shape:
    text = " ".join(sql.split())
    bare = _STRINGS.sub(lambda m: "_" * len(m.group()), text)
    pieces = bare.split("?")
    job_params = tuple(i for i, before in enumerate(pieces[:-1]) if _JOB_COLUMN.search(before))
    return _Shape(text, bool(_ON_JOBS.search(bare)), bool(_WRITES.match(bare)), job_params)


#: Characters of a statement worth reading in a timeline (and caching); longer ones are bulk.
_LONG = 2_000


def _compact(events: list[Event]) -> list[Event]:
    """Too many events to read: keep every write, call, crash and recovery, and of the reads
    only each worker's first since its previous write (what its next write is based on)."""
    if len(events) <= _TIMELINE_LINES:
        return events
    kept: list[Event] = []
    read_since_write: set[str] = set()
    for event in events:
        statement = event.what.split(" → ", 1)[0]
        if event.kind == "sql" and statement[:7].upper().startswith("SELECT"):
            if event.worker in read_since_write:
                continue
            read_since_write.add(event.worker)
        else:
            read_since_write.discard(event.worker)
        kept.append(event)
    return kept


def _changes_rows(statement: str) -> bool:
    """An UPDATE or DELETE: what another worker (or the harness playing one) does to a row."""
    return statement[:7].upper() in ("UPDATE ", "DELETE ")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _ids(jobs: list[int], rows: list[dict[str, Any]] | None, empty: str = "") -> str:
    if not jobs:
        return empty
    shown = ", ".join(str(j) for j in jobs[:3])
    more = f" (+{len(jobs) - 3})" if len(jobs) > 3 else ""
    return f"job{'s' if len(jobs) > 1 else ''} {shown}{more}, "


def _first_line(error: BaseException) -> str:
    return (str(error).splitlines() or [""])[0][:80]


#: How an API call ended, in words (the others are told as they are: ok, crashed, ...).
_TOLD = {
    "replayed": "replayed (same key: the first answer, nothing done again)",
    "rate_limited": "429 rate limited",
    "timeout_before": "timed out (nothing done)",
    "timeout_after": "timed out (but it was done)",
}


def _call_event(call: Call, durations: bool = False) -> Event:
    told = _TOLD.get(call.outcome, call.outcome)
    if call.result:
        told = f"{told} {_clip(call.result)}"
    elif call.error and call.outcome not in _TOLD:
        told = f"{told} ({call.error})"
    if durations:
        seconds = call.duration
        told += f" after {seconds * 1000:.0f} ms" if seconds < 1 else f" after {seconds:.2f} s"
    if call.idempotency_key:
        told += f", key {call.idempotency_key}"
    if call.in_transaction:
        told += " (inside a transaction)"
    return Event(
        call.at,
        call.caller,
        "call",
        f"{call.operation}({_clip(call.subject)}) → {told}",
        (call.job_id,) if call.job_id is not None else (),
        call.site,
    )


def _clip(value: object, limit: int = 32) -> str:
    """An API's argument or answer (a reply, a message id), short enough to scan."""
    text = " ".join(str(value if value is not None else "").split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _short_site(site: str) -> str:
    return site.split(" in ", 1)[0]
