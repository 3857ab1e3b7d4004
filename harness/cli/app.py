"""The application object that the root command builds into ``ctx.obj``: where things are (the
project, the candidate's file, ``.kata/``), the terminal, and the progress file."""

from __future__ import annotations

from datetime import datetime
from functools import cached_property
from pathlib import Path

from ..paths import PROJECT_ROOT, kata_home
from ..progress import Progress, counts_as_progress
from ..record.store import STORE_NAME
from ..sql.config import DatabaseConfig
from ..worker.solutions import CANDIDATE_PATH, REFERENCE_PATH
from .board import BoardState
from .grading_process import GradeRequest
from .terminal import Terminal

__all__ = ["SECOND_DB_ENV", "App", "graded_on"]

#: A second database URL: tasks that pass on the main backend are graded on it too.
SECOND_DB_ENV = "KATA_SECOND_DATABASE_URL"


class App:
    def __init__(
        self, terminal: Terminal | None = None, *, home: Path | None = None, command: str = ""
    ) -> None:
        self.terminal = terminal or Terminal()
        self.home = home or kata_home()
        self.command = command or "harness"  # whose events the session record says they are

    @property
    def progress_path(self) -> Path:
        """The store that holds the progress and the session record (see harness.record)."""
        return self.home / STORE_NAME

    @property
    def interviews_path(self) -> Path:
        """The interviews that have ended, one JSON line each (see ``interview``)."""
        return self.home / "interviews.jsonl"

    @property
    def backups(self) -> Path:
        return self.home / "backups"

    @cached_property
    def progress(self) -> Progress:
        return Progress.load(self.progress_path, source=self.command)

    def progress_for(self, solution: Path) -> Progress | None:
        """Where grading ``solution`` is recorded: the progress file, unless the solution is
        one of the harness's own (see ``counts_as_progress``)."""
        return self.progress if counts_as_progress(solution) else None

    def solution_path(self, given: str | Path | None = None) -> Path:
        return Path(given).resolve() if given else CANDIDATE_PATH

    def reference_text(self) -> str:
        return REFERENCE_PATH.read_text()

    def backup(self, path: Path, label: str) -> Path:
        """Copy ``path`` to ``.kata/backups/<stem>-<label>-<timestamp>.py``; return the copy."""
        self.backups.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        target = self.backups / f"{path.stem}-{label}-{stamp}{path.suffix}"
        counter = 2
        while target.exists():
            target = self.backups / f"{path.stem}-{label}-{stamp}-{counter}{path.suffix}"
            counter += 1
        target.write_bytes(path.read_bytes())
        return target

    def board_state(
        self, request: GradeRequest, *, second_db: str | None = None, watching: str | None = None
    ) -> BoardState:
        return BoardState(
            solution=_shown(request.solution),
            backend=graded_on(request.url),
            second_backend=graded_on(second_db) if second_db else None,
            watching=watching,
            keys=watching is not None,
        )


def graded_on(url: str) -> str:
    """What a grading run on ``url`` really uses, for the board's header: never the database
    file or schema the URL names, but a fresh file per test, or one schema of the grading's own
    that each test starts from empty (see ``harness.sql.reuse``)."""
    config = DatabaseConfig(url=url)
    if config.dialect == "sqlite":
        latency = f"{config.round_trip_latency * 1000:g} ms/round trip"
        return f"SQLite, a fresh database file per test ({latency})"
    return f"{config.describe()}, one schema, emptied for each test"


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(PROJECT_ROOT))
    except ValueError:
        return str(path)
