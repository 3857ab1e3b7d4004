"""Code on the terminal with every line whole: never wrapped, never cut at the console's width.

Rich fits what it prints to the console's width (80 columns in a pipe or an 80-column terminal):
a ``Syntax`` crops a longer line, a Markdown code block wraps it. Code that a candidate reads and
copies must survive as it is, so its lines are laid out as wide as the longest one and printed
with ``crop=False`` (``Terminal.print_whole``); a narrower terminal folds them itself, as it
does for ``cat``. A panel cannot grow (the dev board fills the screen), so there the code says
when the edge cut it.
"""

from __future__ import annotations

from rich.cells import cell_len
from rich.console import Console, ConsoleOptions, RenderableType, RenderResult
from rich.markdown import CodeBlock, Markdown
from rich.syntax import Syntax
from rich.text import Text

__all__ = ["CUT_NOTE", "CodeMarkdown", "NotesCuts", "whole_code", "widest_line"]

#: Said under code that a panel had to cut.
CUT_NOTE = (
    "lines cut at the edge: `python -m harness hint` and `python -m harness solution` "
    "print them whole"
)


def widest_line(code: str) -> int:
    """Cells of the widest line of ``code`` (tabs as Syntax expands them)."""
    return max((cell_len(line.expandtabs(4)) for line in code.splitlines()), default=0)


def whole_code(code: str, lexer: str = "python") -> Syntax:
    """``code`` highlighted, laid out as wide as its widest line (so never wrapped)."""
    code = code.rstrip()
    return Syntax(
        code,
        lexer,
        theme="ansi_dark",
        background_color="default",
        word_wrap=False,
        code_width=max(1, widest_line(code)),
    )


class _WholeCodeBlock(CodeBlock):
    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield whole_code(str(self.text), self.lexer_name)


class CodeMarkdown(Markdown):
    """Markdown whose code blocks (fenced or indented) keep every line whole."""

    elements = {**Markdown.elements, "fence": _WholeCodeBlock, "code_block": _WholeCodeBlock}

    @property
    def widest_code(self) -> int:
        return max(
            (
                widest_line(token.content)
                for token in self.parsed
                if token.type in ("fence", "code_block")
            ),
            default=0,
        )


class NotesCuts:
    """``renderable`` (code ``widest`` cells wide), then ``CUT_NOTE`` when it is given less
    room than that: where it cannot be printed whole, it must not be cut silently."""

    def __init__(self, renderable: RenderableType, widest: int) -> None:
        self.renderable = renderable
        self.widest = widest

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        yield self.renderable
        if self.widest > options.max_width:
            yield Text(CUT_NOTE, style="dim")
