"""Watch mode's inputs: noticing saves (watchfiles, or polling) and reading single keys."""

from __future__ import annotations

import asyncio
import os
import pty
import termios
from pathlib import Path

import pytest

from harness.cli import watch
from harness.cli.keys import KeyReader, cbreak
from harness.cli.watch import watch_file


async def changes_seen(
    path: Path, edit, *, force_polling: bool = False, timeout: float = 10.0
) -> tuple[int, list[str]]:
    """Start watching ``path``, run ``edit()``, and count the changes noticed."""
    seen = asyncio.Event()
    count = 0
    modes: list[str] = []

    def changed() -> None:
        nonlocal count
        count += 1
        seen.set()

    watcher = asyncio.create_task(
        watch_file(path, changed, on_mode=modes.append, force_polling=force_polling)
    )
    await asyncio.sleep(0.5)  # let the watcher settle: it looks at the file once when ready
    count = 0
    seen.clear()
    edit()
    try:
        await asyncio.wait_for(seen.wait(), timeout)
        await asyncio.sleep(0.3)
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    return count, modes


async def test_the_watcher_looks_once_when_it_is_ready(tmp_path: Path) -> None:
    """A save made while the watch was being set up raised no event: the first look finds it."""
    path = tmp_path / "solution.py"
    path.write_text("one\n")
    calls: list[str] = []
    watcher = asyncio.create_task(
        watch_file(path, lambda: calls.append("change"), on_mode=calls.append)
    )
    await asyncio.sleep(0.3)
    watcher.cancel()
    await asyncio.gather(watcher, return_exceptions=True)
    assert calls == ["watching solution.py for saves (watchfiles)", "change"]


async def test_a_plain_save_is_noticed(tmp_path: Path) -> None:
    path = tmp_path / "solution.py"
    path.write_text("one\n")
    count, modes = await changes_seen(path, lambda: path.write_text("two\n"))
    assert count >= 1
    assert modes == ["watching solution.py for saves (watchfiles)"]


async def test_a_save_by_writing_a_temporary_file_and_renaming_it_is_noticed(
    tmp_path: Path,
) -> None:
    path = tmp_path / "solution.py"
    path.write_text("one\n")

    def save_like_an_editor() -> None:
        temporary = tmp_path / ".solution.py.swp"
        temporary.write_text("two\n")
        os.replace(temporary, path)

    count, _ = await changes_seen(path, save_like_an_editor)
    assert count >= 1


async def test_other_files_in_the_directory_are_ignored(tmp_path: Path) -> None:
    path = tmp_path / "solution.py"
    path.write_text("one\n")
    with pytest.raises(TimeoutError):
        await changes_seen(path, lambda: (tmp_path / "notes.txt").write_text("x"), timeout=1.0)


async def test_polling_notices_saves_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(watch, "POLL_INTERVAL", 0.05)
    path = tmp_path / "solution.py"
    path.write_text("one\n")
    count, modes = await changes_seen(
        path, lambda: path.write_text("two, longer\n"), force_polling=True
    )
    assert count >= 1
    assert modes == ["polling solution.py every 0.05 s for saves (press r to re-run)"]


async def test_when_watching_is_impossible_it_says_so_and_polls(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import watchfiles

    def broken(*args: object, **kwargs: object):
        raise OSError("inotify watch limit reached")

    monkeypatch.setattr(watchfiles, "awatch", broken)
    monkeypatch.setattr(watch, "POLL_INTERVAL", 0.05)
    path = tmp_path / "solution.py"
    path.write_text("one\n")
    count, modes = await changes_seen(path, lambda: path.write_text("two, longer\n"))
    assert count >= 1
    assert modes[-1].startswith(
        f"cannot watch {tmp_path}: inotify watch limit reached; "
        "polling solution.py every 0.05 s instead"
    )


# --- keys ----------------------------------------------------------------------------------------


async def test_keys_arrive_one_by_one_and_end_of_input_stops_the_reader() -> None:
    read, write = os.pipe()
    keys: list[str] = []
    with os.fdopen(read) as stream:
        reader = KeyReader(stream, keys.append)
        os.write(write, b"hr")
        await asyncio.sleep(0.1)
        os.write(write, b"q")
        os.close(write)
        await asyncio.sleep(0.1)
        assert keys == ["h", "r", "q"]
        assert not reader._open
        reader.close()


def test_cbreak_restores_the_terminal_and_ignores_what_is_not_one() -> None:
    leader, follower = pty.openpty()
    try:
        with os.fdopen(follower, "r", closefd=False) as stream:
            before = termios.tcgetattr(follower)
            with cbreak(stream) as is_terminal:
                assert is_terminal
                during = termios.tcgetattr(follower)
                assert not during[3] & termios.ICANON and not during[3] & termios.ECHO
            assert termios.tcgetattr(follower) == before
    finally:
        os.close(leader)
        os.close(follower)
    read, write = os.pipe()
    with os.fdopen(read) as pipe, cbreak(pipe) as is_terminal:
        assert not is_terminal
    os.close(write)
