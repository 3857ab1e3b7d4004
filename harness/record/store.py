"""The kata home's one local store: the candidate's progress and the record of every session.

One SQLite file, ``kata.sqlite3`` in ``.kata/`` (or ``KATA_HOME``), written by every process that
grades, hints or drills: ``dev`` (one or several windows), ``grade``, ``pytest``, ``hint``,
``scenarios``. Each change is one short transaction (``BEGIN IMMEDIATE``, a few statements,
``COMMIT``) on the process's own connection: write-ahead logging lets readers go on while one
process writes, and the busy timeout makes a second writer wait its turn instead of failing. A
change is made in place (``hint_level = MAX(hint_level, ?)``), never by writing back an object
read earlier: the lost update Task C teaches cannot happen here.

The record (``sessions`` and ``events``) is append-only, which triggers enforce. Nothing leaves
the machine: there is no network code in this package.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

__all__ = ["BUSY_TIMEOUT_MS", "LEGACY_PROGRESS", "STORE_NAME", "Store"]

#: The store's file name in the kata home.
STORE_NAME = "kata.sqlite3"
#: The progress file of earlier versions, migrated once into the store.
LEGACY_PROGRESS = "progress.json"
#: How long a writer waits for another one before giving up (a grading run never writes for
#: more than a few milliseconds).
BUSY_TIMEOUT_MS = 10_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS tasks (
    task TEXT PRIMARY KEY,
    first_passed TEXT,
    backends TEXT NOT NULL DEFAULT '[]',
    last_status TEXT,
    last_graded TEXT,
    hint_level INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS interview (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    started TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS interview_passed (task TEXT PRIMARY KEY, at TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS sessions (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL,
    started REAL NOT NULL,
    pid INTEGER NOT NULL,
    solution TEXT,
    interview INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    session INTEGER NOT NULL REFERENCES sessions (id),
    at REAL NOT NULL,
    source TEXT NOT NULL,
    kind TEXT NOT NULL,
    task TEXT,
    data TEXT NOT NULL DEFAULT '{}',
    blob BLOB
);
CREATE INDEX IF NOT EXISTS events_of_a_session ON events (session, id);
CREATE INDEX IF NOT EXISTS events_of_a_kind ON events (kind, session);
CREATE TRIGGER IF NOT EXISTS events_are_never_changed BEFORE UPDATE ON events
    BEGIN SELECT RAISE(ABORT, 'the session record is append-only'); END;
CREATE TRIGGER IF NOT EXISTS events_are_never_deleted BEFORE DELETE ON events
    BEGIN SELECT RAISE(ABORT, 'the session record is append-only'); END;
CREATE TRIGGER IF NOT EXISTS sessions_are_never_changed BEFORE UPDATE ON sessions
    BEGIN SELECT RAISE(ABORT, 'the session record is append-only'); END;
"""


class Store:
    """The store at ``path``; created (and the legacy progress file migrated) on first use."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._ready = False
        self._connected: tuple[int, sqlite3.Connection] | None = None  # (pid, connection)
        self._lock = threading.RLock()  # a transaction at a time on the connection

    @classmethod
    def in_home(cls, home: Path) -> Store:
        return cls(home / STORE_NAME)

    @property
    def legacy_progress(self) -> Path:
        return self.path.with_name(LEGACY_PROGRESS)

    @contextlib.contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One short write transaction: taken at once (``BEGIN IMMEDIATE``), so that two
        writers queue instead of one of them failing to upgrade its read lock."""
        with self._connection() as connection:
            connection.execute("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[sqlite3.Connection]:
        """A consistent view for the length of the block (one read transaction)."""
        with self._connection() as connection:
            connection.execute("BEGIN")
            try:
                yield connection
            finally:
                connection.execute("COMMIT")

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        # One connection per process, opened on first use: dev forks its grading processes,
        # and an SQLite connection must never be used across a fork, so a child opens its own.
        self._ensure()
        with self._lock:
            if self._connected is None or self._connected[0] != os.getpid():
                self._connected = (os.getpid(), self._connect())
            yield self._connected[1]

    def _connect(self) -> sqlite3.Connection:
        connection = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None, check_same_thread=False
        )
        connection.row_factory = sqlite3.Row
        connection.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        # In WAL mode NORMAL never corrupts the file; a power cut may lose the last save.
        connection.execute("PRAGMA synchronous = NORMAL")
        return connection

    def _ensure(self) -> None:
        if self._ready:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        connection = self._connect()
        try:
            if connection.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
                connection.execute("PRAGMA journal_mode = WAL")
            connection.execute("BEGIN IMMEDIATE")
            try:
                for statement in _statements(_SCHEMA):
                    connection.execute(statement)
                self._migrate(connection)
            except BaseException:
                connection.execute("ROLLBACK")
                raise
            connection.execute("COMMIT")
        finally:
            connection.close()
        self._ready = True

    def _migrate(self, connection: sqlite3.Connection) -> None:
        """Import ``progress.json`` once (in the transaction that creates the store), then set
        it aside so that nobody mistakes it for the progress."""
        done = connection.execute("SELECT 1 FROM meta WHERE key = 'progress_json'").fetchone()
        if done:
            return
        legacy = self.legacy_progress
        data: dict[str, object] = {}
        with contextlib.suppress(OSError, ValueError):
            loaded = json.loads(legacy.read_text())
            data = loaded if isinstance(loaded, dict) else {}
        tasks = data.get("tasks")
        for task, info in (tasks if isinstance(tasks, dict) else {}).items():
            if not isinstance(info, dict):
                continue
            connection.execute(
                "INSERT OR REPLACE INTO tasks VALUES (?, ?, ?, ?, ?, ?)",
                (
                    task,
                    info.get("first_passed"),
                    json.dumps(list(info.get("backends") or [])),
                    info.get("last_status"),
                    info.get("last_graded"),
                    int(info.get("hint_level") or 0),
                ),
            )
        interview = data.get("interview")
        if isinstance(interview, dict) and interview.get("started"):
            connection.execute(
                "INSERT OR REPLACE INTO interview VALUES (1, ?)", (interview["started"],)
            )
            for task, at in dict(interview.get("passed") or {}).items():
                connection.execute(
                    "INSERT OR REPLACE INTO interview_passed VALUES (?, ?)", (task, at)
                )
        connection.execute(
            "INSERT INTO meta VALUES ('progress_json', ?)",
            ("migrated" if data else "none",),
        )
        if data:
            with contextlib.suppress(OSError):
                legacy.replace(legacy.with_name(LEGACY_PROGRESS + ".migrated"))


def _statements(script: str) -> list[str]:
    """The schema's statements, one by one (``executescript`` would commit the transaction)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return statements
