"""Reading the record back: the sessions, and one session's events and versions of the file."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from .delta import apply, decompress
from .events import alive
from .store import Store

__all__ = ["Event", "SessionInfo", "SessionLog", "load", "sessions"]


@dataclass(frozen=True)
class Event:
    id: int
    at: float  # Unix time
    source: str  # the command that appended it: dev, grade, pytest, hint, drill
    kind: str
    task: str | None
    data: dict[str, Any]
    blob: bytes | None = None

    def text(self) -> str | None:
        """The text the blob holds (a file, the design notes), for the kinds that keep one."""
        return decompress(self.blob) if self.blob is not None else None


@dataclass(frozen=True)
class SessionInfo:
    id: int
    kind: str  # dev, or the command that recorded outside any dev session
    started: float
    solution: str | None
    interview: bool
    last: float  # the time of its last event
    ended: float | None  # when it quit; None while it runs or when it never said (a crash)
    running: bool
    events: int
    saves: int

    @property
    def until(self) -> float:
        """Its end, or its last event when it has none."""
        return self.ended if self.ended is not None else self.last


@dataclass
class SessionLog:
    info: SessionInfo
    events: list[Event] = field(default_factory=list)

    def of(self, *kinds: str) -> list[Event]:
        return [event for event in self.events if event.kind in kinds]

    def versions(self) -> list[tuple[Event | None, str]]:
        """Every version of the file: the one it started with (no event), then one per save."""
        start = next(iter(self.of("start")), None)
        text = start.text() if start is not None else None
        versions: list[tuple[Event | None, str]] = [] if text is None else [(None, text)]
        for save in self.of("save"):
            if save.blob is None:
                continue  # too large to keep
            whole = save.data.get("whole") or text is None
            text = decompress(save.blob) if whole else apply(text or "", save.blob)
            versions.append((save, text))
        end = next(iter(self.of("end")), None)
        if not versions and end is not None and (last := end.text()) is not None:
            versions.append((None, last))
        return versions


def sessions(store: Store) -> list[SessionInfo]:
    """Every recorded session, oldest first."""
    with store.read() as connection:
        rows = connection.execute(
            "SELECT s.id, s.kind, s.started, s.pid, s.solution, s.interview, "
            "COUNT(e.id) AS events, MAX(e.at) AS last, "
            "SUM(e.kind = 'save') AS saves, MAX(CASE WHEN e.kind = 'end' THEN e.at END) AS ended "
            "FROM sessions s LEFT JOIN events e ON e.session = s.id GROUP BY s.id ORDER BY s.id"
        ).fetchall()
    return [
        SessionInfo(
            id=row["id"],
            kind=row["kind"],
            started=row["started"],
            solution=row["solution"],
            interview=bool(row["interview"]),
            last=row["last"] if row["last"] is not None else row["started"],
            ended=row["ended"],
            running=row["ended"] is None and alive(row["pid"]),
            events=row["events"],
            saves=row["saves"] or 0,
        )
        for row in rows
    ]


def load(store: Store, session: int | None = None) -> SessionLog:
    """Session ``session`` (default: the last dev session, else the last one); ``LookupError``
    when there is no such session."""
    known = sessions(store) if store.path.exists() else []
    if session is None:
        chosen = next((s for s in reversed(known) if s.kind == "dev"), None) or (
            known[-1] if known else None
        )
    else:
        chosen = next((s for s in known if s.id == session), None)
    if chosen is None:
        raise LookupError(
            f"no session {session} in the record" if session is not None else "no session yet"
        )
    with store.read() as connection:
        rows = connection.execute(
            "SELECT id, at, source, kind, task, data, blob FROM events WHERE session = ? "
            "ORDER BY id",
            (chosen.id,),
        ).fetchall()
    events = [
        Event(
            row["id"],
            row["at"],
            row["source"],
            row["kind"],
            row["task"],
            json.loads(row["data"]),
            row["blob"],
        )
        for row in rows
    ]
    return SessionLog(chosen, events)
