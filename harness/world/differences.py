"""Where two values differ, shown so that a reader sees the difference, not a shared prefix.

    >>> how_it_differs("body", "Hi ada, campaign 3. [#1]", "Hi ada, campaign 3. [#2]")
    "the body differs at character 23: '...campaign 3. [#1]' then '...campaign 3. [#2]'"

Two bodies of one email usually share a long greeting; cutting both to their first 40 characters
shows the same text twice. The first differing position, with a little context on each side,
is what a reader needs.
"""

from __future__ import annotations

__all__ = ["first_difference", "how_it_differs"]

#: Characters shown on each side of the first difference.
CONTEXT = 16


def first_difference(before: str, after: str) -> int | None:
    """The index of the first character that differs (the shorter one's length when one is a
    prefix of the other), or None when they are equal."""
    if before == after:
        return None
    for i, (a, b) in enumerate(zip(before, after, strict=False)):
        if a != b:
            return i
    return min(len(before), len(after))


def _around(text: str, i: int) -> str:
    start, end = max(0, i - CONTEXT), i + CONTEXT
    shown = repr(text[start:end])
    quote = shown[0]
    if start > 0:
        shown = f"{quote}...{shown[1:]}"
    if end < len(text):
        shown = f"{shown[:-1]}...{quote}"
    return shown


def _tail(text: str, i: int) -> str:
    shown = repr(text[i : i + CONTEXT])
    return shown if i + CONTEXT >= len(text) else f"{shown[:-1]}...{shown[-1]}"


def how_it_differs(name: str, before: object, after: object) -> str:
    """ "the body differs at character 58: '...campaign 3. [#1]' then '...campaign 3. [#2]'";
    values short enough to read whole are shown whole."""
    if (
        not (isinstance(before, str) and isinstance(after, str))
        or max(len(before), len(after)) <= 2 * CONTEXT
    ):
        return f"the {name} was {before!r}, now {after!r}"
    i = first_difference(before, after)
    if i is None:
        return f"the {name} is the same"
    if i >= len(before):
        return (
            f"the {name} differs after character {i}: the first ends there, the second goes "
            f"on with {_tail(after, i)}"
        )
    if i >= len(after):
        return (
            f"the {name} differs after character {i}: the second ends there, the first goes "
            f"on with {_tail(before, i)}"
        )
    return f"the {name} differs at character {i + 1}: {_around(before, i)} then {_around(after, i)}"
