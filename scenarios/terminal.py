"""All of a drill's output goes through ``DrillTerminal``: the live board, text, prompts and JSON.

On a terminal the board is drawn live by rich's ``Live``; anywhere else (a pipe, a log, a test's
``CliRunner``) nothing is redrawn and each run ends with a plain-text summary. In ``--json`` mode
stdout carries the JSON document and nothing else.
"""

from __future__ import annotations

import gc
import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import click
from rich.console import Console, RenderableType
from rich.live import Live

from .dashboard import render
from .snapshot import Snapshot

__all__ = ["DrillTerminal"]

_NOISY_LOGGERS = ("psycopg", "asyncio")


class _Collect(logging.Handler):
    def __init__(self, into: list[logging.LogRecord]) -> None:
        super().__init__(logging.WARNING)
        self.into = into

    def emit(self, record: logging.LogRecord) -> None:
        self.into.append(record)


class DrillTerminal:
    def __init__(self, *, as_json: bool = False, console: Console | None = None) -> None:
        self.as_json = as_json
        # Rich detects a terminal itself; click's CliRunner and pipes get plain text.
        self.console = console or Console(file=sys.stdout, highlight=False)
        self.errors = Console(file=sys.stderr, highlight=False)

    @property
    def live(self) -> bool:
        """Whether to draw the board live (a terminal, and not in --json mode)."""
        return self.console.is_terminal and not self.as_json

    @property
    def width(self) -> int:
        """Columns the output has (a pipe's default, 80, when it is no terminal)."""
        return self.console.width

    def show(self, *renderables: RenderableType, **options: Any) -> None:
        if not self.as_json:
            self.console.print(*renderables, **options)

    def rule(self, title: str = "") -> None:
        if not self.as_json:
            self.console.rule(title, align="left")

    def error(self, message: str) -> None:
        self.errors.print(message, style="bold red", markup=False)

    def emit_json(self, document: dict[str, Any]) -> None:
        click.echo(json.dumps(document, indent=2, default=str))

    @contextmanager
    def board(self) -> Iterator[Any]:
        """A callback that draws each snapshot: live on a terminal, nowhere otherwise."""
        if not self.live:
            yield None
            return
        with Live(console=self.console, auto_refresh=False, transient=False) as live:

            def draw(snapshot: Snapshot) -> None:
                # At the terminal's size, read at each frame: a board taller than the screen
                # would be cropped at its bottom, so a short terminal gets the compact one.
                width, height = self.console.size
                live.update(render(snapshot, width=width, height=height), refresh=True)

            yield draw

    @contextmanager
    def driver_noise(self) -> Iterator[list[str]]:
        """Keep the drivers' own log lines (psycopg closing a cancelled query's connection,
        asyncio reporting a task that died with it) off the screen: they come from workers
        cancelled at the deadline, and tell the candidate nothing about the incident. The
        messages are collected in the list yielded (a run's record keeps them)."""
        collected: list[logging.LogRecord] = []
        messages: list[str] = []
        handler = _Collect(collected)
        loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
        saved = [(lg.handlers[:], lg.propagate) for lg in loggers]
        for lg in loggers:
            lg.handlers, lg.propagate = [handler], False
        try:
            yield messages
        finally:
            gc.collect()  # a task that died unobserved is reported when it is collected: now
            for lg, (handlers, propagate) in zip(loggers, saved, strict=True):
                lg.handlers, lg.propagate = handlers, propagate
            messages.extend((record.getMessage().splitlines() or [""])[0] for record in collected)

    def ask(self, prompt: str, *, choices: list[str] | None = None) -> str:
        if choices is not None:
            return str(
                click.prompt(prompt, type=click.Choice(choices, case_sensitive=False))
            ).upper()
        return str(click.prompt(prompt, default="", show_default=False))
