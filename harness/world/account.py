"""The fake SendGrid account's send rate, shared by every process that sends: Task G's world.

SendGrid limits the whole account, not a worker: ``SEND_RATE_PER_SECOND`` sends a second, through
a token bucket it keeps itself, and a send that finds the bucket empty is answered 429 with the
time until it may go (``retry_after``). ``SendAccount`` is that bucket. Its state is a few bytes
in a file of the test's temporary directory, read and written under an exclusive ``flock``, so
that twenty workers in four processes spend one bucket (a process opens the file by its path),
and the candidate's code does not reach it through the database, which holds only the limiter's
own state. Only Task G's tests give their fake services an account; in every other task, and in
the drills, SendGrid has no rate limit but the 429s a fault plan scripts.

How big the bucket is decides whether a correct limiter can ever be refused, so it is sized by
an argument, not by luck: a limiter that keeps the contract's rule (never more than ``BURST``
sends at once, ``SEND_RATE_PER_SECOND`` a second after that) lets at most ``BURST + R * t`` sends
go in any ``t`` seconds. Between its yes and the send reaching SendGrid each of the ``workers``
may lose any amount of time (a stalled event loop, a busy machine), so the sends may bunch up,
but never by more than one per worker. A bucket that holds ``workers + BURST + 2`` tokens and
starts from ``BURST + 1`` therefore never refuses such a limiter, however late its workers run,
while two processes that each use the whole rate are refused within a few sends.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import struct
import tempfile
import weakref
from typing import Any

__all__ = ["BURST", "SEND_RATE_PER_SECOND", "SendAccount"]

SEND_RATE_PER_SECOND = 50.0
"""Sends a second the fake SendGrid allows the whole account, in Task G's tests."""

BURST = 2
"""The most sends a limiter may let go at once: a schedule rounded to whole slots lets two go
together, and so does a bucket of two tokens."""

#: Tokens the bucket holds when a 429 says the account may send again: enough for a limiter
#: that starts again at ``reset_at`` with a burst, and one more.
_TOKENS_AT_RESET = BURST + 1

#: tokens, when they were counted (UNIX seconds), capacity, sends accepted, sends refused.
_STATE = struct.Struct("=5d")


class SendAccount:
    """SendGrid's token bucket for one account, shared by every process that has it.

    Made by the test in the grading process; a worker process gets it as an argument (it
    pickles as its file's path) and opens the same file."""

    def __init__(self, rate: float = SEND_RATE_PER_SECOND, *, workers: int = 20) -> None:
        self.rate = rate
        fd, self.path = tempfile.mkstemp(prefix="kata-sendgrid-", suffix=".account")
        self._fd: int | None = fd
        self._release: weakref.finalize[Any, Any] | None = weakref.finalize(
            self, _release, fd, self.path
        )
        self.reset(workers=workers, at=0.0)

    def __getstate__(self) -> dict[str, Any]:
        return {"rate": self.rate, "path": self.path}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.rate, self.path, self._fd = state["rate"], state["path"], None
        self._release = None  # a worker process's copy: opened when first used, never removed

    def close(self) -> None:
        """The test is over: the file goes (in a worker process, the copy only closes it)."""
        if self._release is not None:
            self._release()
        elif self._fd is not None:
            os.close(self._fd)
        self._fd = None

    # -- the bucket -------------------------------------------------------------------------

    def reset(self, *, workers: int, at: float) -> None:
        """A fresh account at wall-clock ``at`` (UNIX seconds), for ``workers`` workers: the
        bucket holds ``BURST + 1`` tokens and at most ``workers + BURST + 2``."""
        with self._locked():
            self._write(_TOKENS_AT_RESET, at, workers + BURST + 2, 0, 0)

    def spent_until(self, until: float, *, now: float) -> None:
        """Another sender (another process already running, another app on the account) has
        used the rate up to ``until``: the bucket fills again then, as after a 429's reset."""
        with self._locked():
            _, _, capacity, accepted, refused = self._read()
            tokens = _TOKENS_AT_RESET - (until - now) * self.rate
            self._write(tokens, now, capacity, accepted, refused)

    def take(self, now: float) -> float | None:
        """A send reaching SendGrid at ``now``: None when the bucket had a token for it, else
        the seconds until the account may send again (the 429's ``retry_after``, to the ms)."""
        with self._locked():
            tokens, at, capacity, accepted, refused = self._read()
            tokens = min(capacity, tokens + max(0.0, now - at) * self.rate)
            at = max(now, at)
            if tokens >= 1.0:
                self._write(tokens - 1.0, at, capacity, accepted + 1, refused)
                return None
            self._write(tokens, at, capacity, accepted, refused + 1)
            return math.ceil((_TOKENS_AT_RESET - tokens) / self.rate * 1000) / 1000

    @property
    def accepted(self) -> int:
        with self._locked():
            return int(self._read()[3])

    @property
    def refused(self) -> int:
        """429s answered since the last ``reset``."""
        with self._locked():
            return int(self._read()[4])

    def __repr__(self) -> str:
        return f"SendAccount({self.rate:g}/s, {self.path})"

    # -- the file ---------------------------------------------------------------------------

    def _locked(self) -> _Flock:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDWR)
        return _Flock(self._fd)

    def _read(self) -> tuple[float, ...]:
        assert self._fd is not None
        return _STATE.unpack(os.pread(self._fd, _STATE.size, 0))

    def _write(self, *values: float) -> None:
        assert self._fd is not None
        os.pwrite(self._fd, _STATE.pack(*values), 0)


class _Flock:
    """An exclusive ``flock`` for the block: the processes sharing the file take turns (a few
    microseconds each; no await inside, so the tasks of one process never contend)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd

    def __enter__(self) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_EX)

    def __exit__(self, *exc: object) -> None:
        fcntl.flock(self.fd, fcntl.LOCK_UN)


def _release(fd: int, path: str) -> None:
    os.close(fd)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
