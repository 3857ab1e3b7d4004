"""A panel that takes the whole screen and scrolls: the hint, the reference, a race's timeline.

Below the board a panel would start under the tasks, the diagnosis and the runs, off an 80x24
screen. Opened, it is the screen: ``render_pager`` draws its body from row ``offset`` on, as many
rows as the screen has, which rows those are in the title and the keys in the bottom edge;
``scrolled`` moves the offset and ``line_count`` says how far it may go (both lay the body out
the same way, at the screen's width).

A race's timeline (``TimelineBody``) arrives as the grader drew it, 100 columns wide; here it is
laid out again at the screen's width, its SQL indented under the event it belongs to. When the
screen cannot hold it all, the events that changed the job (the writes, crashes and lease
recoveries: the conflict) come first, then every event in order. The replay command is no row of
the box: a test id can be wider than the screen, and a command cut in two cannot be copied; the
session shows it on a line of its own (key ``c``)."""

from __future__ import annotations

import re
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass

from rich import box
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.panel import Panel
from rich.segment import Segment
from rich.text import Text

from .keys import DOWN, END, HOME, PAGE_DOWN, PAGE_UP, UP

__all__ = [
    "SCROLL_KEYS",
    "TimelineBody",
    "TimelineEvent",
    "body_rows",
    "line_count",
    "parse_timeline",
    "render_pager",
    "scrolled",
]

SCROLL_KEYS = frozenset({UP, DOWN, PAGE_UP, PAGE_DOWN, HOME, END, "j", "k", " ", "g", "G"})
#: Rows of the screen that are not the body: the box's top and bottom edges.
_CHROME = 2
#: Columns of the box that are not the body: its edges and their padding.
_FRAME = 4
_EVENT = re.compile(r"^\s+\d+\.\d+ s  ")
_REPLAY = "  replay: "
_ELIDED = re.compile(r"^\s*… \d+ more events? …$")
_CONFLICT = re.compile(r"^(?:UPDATE|DELETE|INSERT)\b|^crashed|^lease expired", re.I)
_BODY_INDENT = " " * 4


@dataclass(frozen=True)
class TimelineEvent:
    """One event of a drawn timeline: its when-who-where line and what it did (unwrapped)."""

    head: str
    what: str = ""

    @property
    def conflicts(self) -> bool:
        """A write that changed a row, a crash, a lease recovery: what made the race."""
        if not _CONFLICT.match(self.what):
            return False
        changed = re.search(r"(\d+) rows?$", self.what)
        return changed is None or changed.group(1) != "0"


@dataclass(frozen=True)
class TimelineBody:
    """A timeline, as the grader drew it, laid out for ``rows`` rows of the screen."""

    events: list[TimelineEvent | str]  # a str: a line that is no event ("… 3 more events …")
    rows: int | None = None  # None: all of it, in order (the board printed, not a screen)

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        width = options.max_width
        everything = self._lines(self.events, width)
        conflict = [e for e in self.events if isinstance(e, TimelineEvent) and e.conflicts]
        if self.rows is None or len(everything) <= self.rows or not conflict:
            yield from everything
            return
        yield Text("the conflict: what changed the job, in order", style="bold")
        yield from self._lines(conflict, width)
        yield Text("")
        yield Text("every event, in order", style="bold")
        yield from everything

    @staticmethod
    def _lines(events: Sequence[TimelineEvent | str], width: int) -> list[Text]:
        lines: list[Text] = []
        for event in events:
            if isinstance(event, str):
                lines.append(Text(event.strip(), style="dim"))
                continue
            lines.append(Text(event.head.strip(), style="bold" if event.conflicts else ""))
            wrapped = textwrap.wrap(
                event.what,
                max(20, width),
                initial_indent=_BODY_INDENT,
                subsequent_indent=_BODY_INDENT + "  ",
                break_long_words=True,  # a word wider than the screen: still under its event
                break_on_hyphens=False,
            )
            lines += [Text(line, style="red" if event.conflicts else "") for line in wrapped]
        return lines


def parse_timeline(lines: list[str]) -> tuple[list[TimelineEvent | str], str | None]:
    """The events and the replay command of a timeline drawn by ``harness.world.history``
    (each event a line of when, who and where, then what it did wrapped under it)."""
    events: list[TimelineEvent | str] = []
    replay = None
    head: str | None = None
    what: list[str] = []

    def close() -> None:
        if head is not None:
            events.append(TimelineEvent(head, " ".join(what)))

    for line in lines:
        if line.startswith(_REPLAY):
            replay = line[len(_REPLAY) :].strip()
        elif _EVENT.match(line):
            close()
            head, what = line, []
        elif _ELIDED.match(line):
            close()
            head, what = None, []
            events.append(line)
        elif head is not None and line.strip():
            what.append(line.strip())
        elif line.strip():
            events.append(line)
    close()
    return events, replay


def scrolled(offset: int, key: str, *, total: int, rows: int) -> int | None:
    """Where ``key`` moves a body of ``total`` rows shown ``rows`` at a time (a line, a page, an
    end); None for a key that does not scroll."""
    if key not in SCROLL_KEYS:
        return None
    page = max(1, rows - 1)
    step = {UP: -1, "k": -1, DOWN: 1, "j": 1, PAGE_UP: -page, PAGE_DOWN: page, " ": page}.get(
        key, -total if key in (HOME, "g") else total
    )
    return max(0, min(offset + step, total - rows))


def body_rows(height: int) -> int:
    """Rows of a screen ``height`` rows high that the pager's body has."""
    return max(1, height - _CHROME)


def _lines(console: Console, body: RenderableType, width: int) -> list[list[Segment]]:
    options = console.options.update(width=max(1, width - _FRAME), height=None)
    return console.render_lines(body, options, pad=False)


def line_count(body: RenderableType, width: int) -> int:
    """Rows ``body`` takes in a pager ``width`` columns wide."""
    return len(_lines(Console(width=width, color_system=None), body, width))


@dataclass(frozen=True)
class _Rows:
    """Rows ``offset`` to ``offset + rows`` of ``body``, laid out at the box's width."""

    body: RenderableType
    offset: int
    rows: int

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        lines = _lines(console, self.body, options.max_width + _FRAME)
        for line in lines[self.offset : self.offset + self.rows]:
            yield from line
            yield Segment.line()


def render_pager(
    title: str,
    body: RenderableType,
    *,
    keys: str,
    offset: int,
    width: int,
    height: int,
    style: str = "cyan",
) -> Panel:
    """The whole screen (``width`` x ``height``) while a panel is open: its body from row
    ``offset`` on, which rows those are in the title, the keys in the bottom edge."""
    rows = body_rows(height)
    total = line_count(body, width)
    offset = max(0, min(offset, total - rows))
    where = f" · {offset + 1}-{min(total, offset + rows)} of {total}" if total > rows else ""
    return Panel(
        _Rows(body, offset, rows),
        title=Text(title + where),
        title_align="left",
        subtitle=Text(keys),
        subtitle_align="right",
        border_style=style,
        box=box.ROUNDED,
        height=height,
        width=width,
    )
