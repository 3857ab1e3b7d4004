"""A save as the change from the previous one: small to keep, exact to replay.

A delta is the list of the line ranges that changed (``[start, end, new lines]`` in the old
text), JSON then zlib: a one-line fix of a 300-line file keeps a few dozen bytes. ``apply`` gives
back the new text exactly, so that the report can show every version and the diffs between them
without the record keeping whole files.
"""

from __future__ import annotations

import difflib
import json
import zlib
from dataclasses import dataclass

__all__ = ["Delta", "apply", "compress", "decompress", "delta", "unified"]

#: A file larger than this is not kept (it is not a solution someone typed).
MAX_TEXT = 512 * 1024


@dataclass(frozen=True)
class Delta:
    blob: bytes  # zlib(JSON of [start, end, lines] changes)
    added: int
    removed: int


def delta(old: str, new: str) -> Delta:
    """What turns ``old`` into ``new``."""
    a, b = old.splitlines(keepends=True), new.splitlines(keepends=True)
    changes = []
    added = removed = 0
    matcher = difflib.SequenceMatcher(None, a, b, autojunk=False)
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag == "equal":
            continue
        changes.append([i1, i2, b[j1:j2]])
        added, removed = added + (j2 - j1), removed + (i2 - i1)
    return Delta(compress(json.dumps(changes)), added, removed)


def apply(old: str, blob: bytes) -> str:
    """``old`` with the changes of ``blob`` (made by ``delta(old, new)``): ``new``."""
    a = old.splitlines(keepends=True)
    out: list[str] = []
    at = 0
    for start, end, lines in json.loads(decompress(blob)):
        out += a[at:start]
        out += lines
        at = end
    out += a[at:]
    return "".join(out)


def unified(old: str, new: str, name: str = "solution.py", context: int = 2) -> str:
    """The change as a unified diff, for people."""
    lines = difflib.unified_diff(
        old.splitlines(),
        new.splitlines(),
        f"a/{name}",
        f"b/{name}",
        n=context,
        lineterm="",
    )
    return "\n".join(lines)


def compress(text: str) -> bytes:
    return zlib.compress(text.encode("utf-8"), 6)


def decompress(blob: bytes) -> str:
    return zlib.decompress(blob).decode("utf-8")
