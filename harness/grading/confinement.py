"""What keeps a grading child in its place, on Linux: it dies with its parent, it cannot fill the
disk, and whatever it leaves running is the parent's to kill (the parent is a "child subreaper").
Used by ``supervisor``; each step is a no-op where the platform lacks it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from pathlib import Path

from . import tamper

__all__ = ["OUTPUT_LIMIT", "become_subreaper", "die_with", "kill_leftovers", "limit_output"]

#: The largest file the child may write (the captured output of a test is one): a solution that
#: prints in a loop is stopped there instead of filling the disk.
OUTPUT_LIMIT = 128 * 1024 * 1024


def limit_output() -> None:
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
        if soft == resource.RLIM_INFINITY or soft > OUTPUT_LIMIT:
            resource.setrlimit(resource.RLIMIT_FSIZE, (OUTPUT_LIMIT, hard))
        # A write past the limit fails with EFBIG (reported), instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    except (ImportError, OSError, ValueError, AttributeError):
        pass


def _prctl(option: int, value: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(option, value, 0, 0, 0)


def become_subreaper() -> None:
    _prctl(36, 1)  # PR_SET_CHILD_SUBREAPER: the child's orphans become ours, to be killed


def die_with(parent: int) -> None:
    _prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG: a killed parent takes the child with it
    if os.getppid() != parent:
        tamper.exit_now(1)


def kill_leftovers() -> None:
    """Kill what the child left running (processes it started, which are ours now)."""
    if not sys.platform.startswith("linux"):
        return
    me = os.getpid()
    for _ in range(5):
        children = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == me:
                    children.append(int(entry))
        if not children:
            return
        for pid in children:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pid in children:
            with contextlib.suppress(ChildProcessError, OSError):
                os.waitpid(pid, 0)
