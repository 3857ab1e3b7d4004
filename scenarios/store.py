"""Where drills keep their runs: one gzipped JSON file per run under ``.kata/drills/``
(``KATA_HOME``): a run's board over time is a few hundred snapshots.

    save(record)                       # after every run
    latest(1, dialect="sqlite")        # the last run of incident 1 watched on SQLite
    fixed_for(record)                  # the last fixed run compared with it

A run's id is ``<incident>-<date>-<time>-<variant>`` (``1-20250301-142233517-flawed``): sorting the
file names sorts the runs. Only the last ``KEEP`` runs of each incident are kept.
"""

from __future__ import annotations

import gzip
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from harness.paths import kata_home

from .record import RunRecord, new_id

__all__ = ["KEEP", "drills_home", "fixed_for", "latest", "load", "new_id", "save"]

#: Runs kept per incident; older ones are removed when a new one is saved.
KEEP = 20
_SUFFIX = ".json.gz"


def drills_home() -> Path:
    # Imported here: the harness's CLI package is heavy, and only this one function is needed.

    return kata_home() / "drills"


def save(record: RunRecord) -> Path:
    home = drills_home()
    home.mkdir(parents=True, exist_ok=True)
    path = home / f"{record.id}{_SUFFIX}"
    partial = home / f"{record.id}.partial"
    data = json.dumps(record.to_json(), separators=(",", ":")).encode("utf-8")
    partial.write_bytes(gzip.compress(data, compresslevel=6))
    os.replace(partial, path)  # a reader never sees half a record
    for old in _paths(record.incident)[:-KEEP]:
        old.unlink(missing_ok=True)
    return path


def load(run: str) -> RunRecord:
    """The run with id ``run`` (or at path ``run``); ``LookupError`` if there is none."""
    path = Path(run) if run.endswith(_SUFFIX) else drills_home() / f"{run}{_SUFFIX}"
    try:
        data = json.loads(gzip.decompress(path.read_bytes()))
    except FileNotFoundError:
        raise LookupError(f"no recorded run {run!r} in {drills_home()}") from None
    except (OSError, EOFError, ValueError) as error:
        raise LookupError(f"cannot read the recorded run {run!r}: {error}") from None
    try:
        return RunRecord.from_json(data)
    except (KeyError, TypeError, ValueError) as error:
        raise LookupError(f"cannot read the recorded run {run!r}: {error}") from None


def latest(
    incident: int, *, variants: tuple[str, ...] = ("flawed",), **wanted: Any
) -> RunRecord | None:
    """The newest readable run of ``incident`` among ``variants`` whose ``dialect``, ``jobs``,
    ``workers``, ``duration`` and ``seed`` are those in ``wanted`` (None: any)."""
    for record in _newest_first(incident, variants):
        if all(value is None or _field(record, name) == value for name, value in wanted.items()):
            return record
    return None


def fixed_for(record: RunRecord) -> RunRecord | None:
    """The newest fixed run measured against ``record``."""
    for candidate in _newest_first(record.incident, ("fixed",)):
        if candidate.fixed_of == record.id:
            return candidate
    return None


def _field(record: RunRecord, name: str) -> Any:
    if name == "dialect":
        return record.dialect
    return getattr(record.load, name)


def _paths(incident: int) -> list[Path]:
    home = drills_home()
    if not home.is_dir():
        return []
    return sorted(home.glob(f"{incident}-*{_SUFFIX}"))


def _newest_first(incident: int, variants: tuple[str, ...]) -> Iterator[RunRecord]:
    for path in reversed(_paths(incident)):
        parts = path.name.removesuffix(_SUFFIX).split("-")
        if len(parts) < 4 or parts[3] not in variants:
            continue
        try:
            yield load(str(path))
        except LookupError:
            continue  # another version's record, or one being written: not ours to read
