"""Single keys from the terminal without Enter: cbreak mode, read through the event loop.

A key that is an escape sequence (an arrow, Page Up) arrives as one name (``UP``, ``PAGE_UP``),
never as its bytes one by one: its leading ESC must not read as the Esc key."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import termios
import tty
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = [
    "DOWN",
    "END",
    "ESC",
    "HOME",
    "PAGE_DOWN",
    "PAGE_UP",
    "UP",
    "KeyReader",
    "cbreak",
    "split_keys",
]

ESC = "\x1b"
UP, DOWN, PAGE_UP, PAGE_DOWN, HOME, END = "up", "down", "page up", "page down", "home", "end"
#: What xterm-like terminals send (CSI and SS3 forms): the final letter, or the number before ~.
_SEQUENCES = {
    "A": UP,
    "B": DOWN,
    "H": HOME,
    "F": END,
    "5~": PAGE_UP,
    "6~": PAGE_DOWN,
    "1~": HOME,
    "7~": HOME,
    "4~": END,
    "8~": END,
}
_SEQUENCE = re.compile(r"\x1b(?:\[[0-9;?]*[ -/]*[@-~]|O[@-~])")


def split_keys(data: str) -> list[str]:
    """The keys in what one read returned: characters, and escape sequences as one name each
    (an unknown one, like a function key, is dropped); an ESC that starts no sequence is Esc."""
    keys: list[str] = []
    index = 0
    while index < len(data):
        sequence = _SEQUENCE.match(data, index)
        if sequence is None:
            keys.append(data[index])
            index += 1
            continue
        body = sequence.group()[2:]
        name = _SEQUENCES.get(body[-1] if not body.endswith("~") else body.split(";")[0])
        if name is not None:
            keys.append(name)
        index = sequence.end()
    return keys


@contextlib.contextmanager
def cbreak(stream: TextIO) -> Iterator[bool]:
    """Put the terminal behind ``stream`` in cbreak mode (keys arrive one by one, unechoed;
    Ctrl-C still interrupts) and restore it on the way out, whatever happens. Yields whether
    ``stream`` is a terminal at all."""
    try:
        fd = stream.fileno()
        saved = termios.tcgetattr(fd) if os.isatty(fd) else None
    except (OSError, ValueError, termios.error):
        saved = None
    if saved is None:
        yield False
        return
    try:
        tty.setcbreak(fd, termios.TCSANOW)
        yield True
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


class KeyReader:
    """Calls ``on_key`` with each character typed on ``stream``, from the event loop."""

    def __init__(self, stream: TextIO, on_key: Callable[[str], None]) -> None:
        self._fd = stream.fileno()
        self._on_key = on_key
        self._loop = asyncio.get_running_loop()
        self._loop.add_reader(self._fd, self._ready)
        self._open = True

    def _ready(self) -> None:
        try:
            data = os.read(self._fd, 64)
        except OSError:
            data = b""
        if not data:  # end of input (not a terminal, or it went away): stop listening
            self.close()
            return
        for key in split_keys(data.decode(errors="ignore")):
            self._on_key(key)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._loop.remove_reader(self._fd)
