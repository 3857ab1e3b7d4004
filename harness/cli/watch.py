"""Noticing saves of one file: watchfiles on its directory, or polling when that is impossible.

The directory is watched, not the file: editors that write a temporary file and rename it over
the original replace the file's inode, which a watch on the file itself would lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Callable
from pathlib import Path

__all__ = ["POLL_INTERVAL", "watch_file"]

POLL_INTERVAL = 0.5  # seconds, when polling
_SETTLE_MS = 50  # a burst of events (truncate, write, rename) is one save once quiet this long


async def watch_file(
    path: Path,
    on_change: Callable[[], None],
    *,
    on_mode: Callable[[str], None],
    force_polling: bool = False,
) -> None:
    """Call ``on_change`` after every save of ``path``, until cancelled. ``on_mode`` hears how
    (and, when watching fails, why it fell back to polling)."""
    if not force_polling:
        # The watch is in place once awatch's generator has started, that is when this task
        # first waits in it: only then say "watching", and look at the file once more, since a
        # save made before that moment raised no event.
        def ready() -> None:
            on_mode(f"watching {path.name} for saves (watchfiles)")
            on_change()

        started = asyncio.get_running_loop().call_soon(ready)
        try:
            from watchfiles import awatch

            async for _changes in awatch(
                path.parent,
                watch_filter=_only(path),
                recursive=False,
                step=_SETTLE_MS,
                debounce=1600,
            ):
                on_change()
            reason = "the watcher stopped"
        except (OSError, RuntimeError, ImportError) as error:
            started.cancel()
            reason = f"cannot watch {path.parent}: {error}"
        on_mode(
            f"{reason}; polling {path.name} every {POLL_INTERVAL:g} s instead (press r to re-run)"
        )
    else:
        on_mode(f"polling {path.name} every {POLL_INTERVAL:g} s for saves (press r to re-run)")
    await _poll(path, on_change)


def _only(path: Path) -> Callable[[object, str], bool]:
    name = path.name
    return lambda change, changed: os.path.basename(changed) == name


def _signature(path: Path) -> tuple[int, int, int] | None:
    with contextlib.suppress(OSError):
        stat = path.stat()
        return stat.st_mtime_ns, stat.st_size, stat.st_ino
    return None


async def _poll(path: Path, on_change: Callable[[], None]) -> None:
    last = _signature(path)
    while True:
        await asyncio.sleep(POLL_INTERVAL)
        now = _signature(path)
        if now != last:
            last = now
            on_change()
