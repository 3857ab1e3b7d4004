"""All of the CLI's terminal output goes through ``Terminal`` (as hatch's commands do), so that
styles live in one place and tests can swap the consoles."""

from __future__ import annotations

from rich.console import Console, RenderableType
from rich.text import Text

__all__ = ["Terminal"]


class Terminal:
    def __init__(self, console: Console | None = None, errors: Console | None = None) -> None:
        # Consoles without a file write to sys.stdout/sys.stderr as they are at print time,
        # which is what click's CliRunner swaps.
        self.console = console or Console(highlight=False)
        self.errors = errors or Console(stderr=True, highlight=False)

    @property
    def is_interactive(self) -> bool:
        return self.console.is_terminal

    def print(self, *renderables: RenderableType) -> None:
        self.console.print(*renderables)

    def print_whole(self, *renderables: RenderableType) -> None:
        """Print without cropping lines at the console's width: for code (see ``code``)."""
        self.console.print(*renderables, crop=False)

    def command(self, label: str, command: str) -> None:
        """A command to copy, on one line however narrow the console (soft wrap: never split)."""
        self.console.print(Text(f"{label}: {command}", style="dim"), soft_wrap=True)

    def info(self, message: str) -> None:
        self.console.print(Text(message))

    def success(self, message: str) -> None:
        self.console.print(Text(message, style="bold green"))

    def warning(self, message: str) -> None:
        self.console.print(Text(message, style="bold yellow"))

    def error(self, message: str) -> None:
        self.errors.print(Text(message, style="bold red"))
