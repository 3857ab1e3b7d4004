"""Single keys from the terminal without Enter: cbreak mode, read through the event loop."""

from __future__ import annotations

import asyncio
import contextlib
import os
import termios
import tty
from collections.abc import Callable, Iterator
from typing import TextIO

__all__ = ["KeyReader", "cbreak"]


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
        for key in data.decode(errors="ignore"):
            self._on_key(key)

    def close(self) -> None:
        if self._open:
            self._open = False
            self._loop.remove_reader(self._fd)
