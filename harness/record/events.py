"""Writing the record: what happened in a session, one event at a time.

Every process that does something worth keeping appends to the record through a ``Journal``:
``dev`` (saves, verdicts, hints, timelines, the interview's parts, the design notes), ``grade``
and ``pytest`` (verdicts), ``hint`` (hints), ``scenarios`` (drills answered). An event belongs to
a session: a ``dev`` window opens one (``SessionRecorder``); the other commands' events go to the
``dev`` session running at that moment in the same kata home (the newest, when there are
several), and to a session of their own when none is running.

Event kinds and their ``data``:

    start     the file when the session started (blob: the text, compressed)
    save      n, added, removed, size (blob: the change from the previous save, see delta)
    verdict   task, status, tier, backend, diagnosis (the first one, its first 400 characters)
    hint      task, level
    timeline  task (the race's timeline was opened, key t)
    phase     part ("design", "implement", "debug", "wrap up", "time is up", "ended: why")
    design    the design notes when a part ended (blob: the text, compressed)
    drill     scenario, run, answer, right, correct, change, points (the debrief's review)
    end       size (blob: the last version of the file, compressed)
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .delta import MAX_TEXT, compress, delta
from .design import DesignNotes, Shown
from .store import Store

__all__ = ["KINDS", "Journal", "SessionRecorder"]

KINDS = ("start", "save", "verdict", "hint", "timeline", "phase", "design", "drill", "end")
#: A first diagnosis is kept to this many characters: enough to tell mistakes apart.
DIAGNOSIS_CHARS = 400
#: A session still open after this long is not "running" any more (a crash left it open).
_LIVE_FOR = 24 * 3600.0


class Journal:
    """Appends events for the process ``source`` ("dev", "grade", "pytest", "hint", "drill")."""

    def __init__(self, store: Store, source: str, *, session: int | None = None) -> None:
        self.store = store
        self.source = source
        self.session = session  # fixed for a dev session's own events; else found per event

    def append(
        self,
        kind: str,
        *,
        task: str | None = None,
        data: Mapping[str, Any] | None = None,
        blob: bytes | None = None,
        connection: sqlite3.Connection | None = None,
        at: float | None = None,
    ) -> int:
        """Append one event (in ``connection``'s transaction when given); its session's id."""
        if connection is None:
            with self.store.write() as own:
                return self.append(kind, task=task, data=data, blob=blob, connection=own, at=at)
        session = self.session or _running_session(connection) or self._own_session(connection)
        connection.execute(
            "INSERT INTO events (session, at, source, kind, task, data, blob) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (
                session,
                time.time() if at is None else at,
                self.source,
                kind,
                task,
                json.dumps(dict(data or {}), separators=(",", ":")),
                blob,
            ),
        )
        return session

    def verdict(
        self,
        connection: sqlite3.Connection,
        task: str,
        status: str,
        *,
        tier: str,
        backend: str,
        diagnosis: str | None,
    ) -> None:
        first = (diagnosis or "").strip()[:DIAGNOSIS_CHARS]
        data = {"status": status, "tier": tier, "backend": backend, "diagnosis": first}
        self.append("verdict", task=task, data=data, connection=connection)

    def _own_session(self, connection: sqlite3.Connection) -> int:
        return open_session(connection, self.source)


def open_session(
    connection: sqlite3.Connection,
    kind: str,
    *,
    solution: Path | None = None,
    interview: bool = False,
) -> int:
    cursor = connection.execute(
        "INSERT INTO sessions (kind, started, pid, solution, interview) VALUES (?, ?, ?, ?, ?)",
        (kind, time.time(), os.getpid(), str(solution) if solution else None, int(interview)),
    )
    assert cursor.lastrowid is not None
    return cursor.lastrowid


def _running_session(connection: sqlite3.Connection) -> int | None:
    """The dev session this event belongs to: this process's own, else the newest running
    one (its process alive, no end recorded)."""
    rows = connection.execute(
        "SELECT id, pid FROM sessions s WHERE kind = 'dev' AND started > ? AND NOT EXISTS "
        "(SELECT 1 FROM events e WHERE e.kind = 'end' AND e.session = s.id) ORDER BY id DESC",
        (time.time() - _LIVE_FOR,),
    ).fetchall()
    me = os.getpid()
    for row in rows:
        if row["pid"] == me:
            return int(row["id"])
    for row in rows:
        if alive(row["pid"]):
            return int(row["id"])
    return None


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class SessionRecorder:
    """One ``dev`` window's session: opened when it starts, ended when it quits. In an
    interview it also keeps the design notes (see ``design``)."""

    def __init__(
        self, store: Store, session: int, solution: Path, text: str | None, *, interview: bool
    ) -> None:
        self.journal = Journal(store, "dev", session=session)
        self.id = session
        self.solution = solution
        self.saves = 0
        self.last_text = text
        self.part: str | None = None
        self.notes = DesignNotes(solution) if interview else None
        self.design_text: str | None = None

    @classmethod
    def open(cls, store: Store, solution: Path, *, interview: bool = False) -> SessionRecorder:
        text = _read(solution)
        with store.write() as connection:
            session = open_session(connection, "dev", solution=solution, interview=interview)
            recorder = cls(store, session, solution, text, interview=interview)
            blob = compress(text) if text is not None else None
            size = len(text) if text is not None else None
            recorder.journal.append("start", data={"size": size}, blob=blob, connection=connection)
        return recorder

    def save(self, text: str) -> bool:
        """Record a save of the file; False when nothing changed since the last one."""
        if text == self.last_text:
            return False
        self.saves += 1
        data: dict[str, Any] = {"n": self.saves, "size": len(text)}
        if self.last_text is None or len(text) > MAX_TEXT or len(self.last_text) > MAX_TEXT:
            data["whole"] = len(text) <= MAX_TEXT  # no version to diff against: the text
            blob = compress(text) if data["whole"] else None
        else:
            change = delta(self.last_text, text)
            data.update(added=change.added, removed=change.removed)
            blob = change.blob
        self.journal.append("save", data=data, blob=blob)
        self.last_text = text
        return True

    def timeline(self, task: str) -> None:
        self.journal.append("timeline", task=task)

    def phase(self, part: str) -> Shown | None:
        """Record the interview's part when it changed; what the board should show then: the
        design notes' template as the design part starts, the strong answer's points as it
        ends."""
        if part == self.part:
            return None
        previous, self.part = self.part, part
        self.journal.append("phase", data={"part": part})
        if self.notes is None:
            return None
        if part == "design":
            return self.notes.offer()
        self._keep_notes()
        return self.notes.compare() if previous == "design" else None

    def close(self) -> None:
        text = _read(self.solution)
        if text is not None and text != self.last_text:
            self.save(text)
        self._keep_notes()
        blob = compress(self.last_text) if self.last_text is not None else None
        self.journal.append("end", data={"saves": self.saves}, blob=blob)

    def _keep_notes(self) -> None:
        text = self.notes.read() if self.notes is not None else None
        if text is not None and text != self.design_text:
            self.design_text = text
            self.journal.append("design", data={"size": len(text)}, blob=compress(text))


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def record_drill(
    home: Path,
    *,
    scenario: int,
    run: str,
    answer: Mapping[str, Any],
    points: list[tuple[str, bool, bool]],
) -> None:
    """An answered drill: the answer given and the right one (``answer``: given, right,
    correct, change) and the debrief's review of the change (label, made, warns)."""
    review = [{"point": label, "made": made, "warns": warns} for label, made, warns in points]
    data = {"scenario": scenario, "run": run, **answer, "review": review}
    Journal(Store.in_home(home), "drill").append("drill", data=data)
