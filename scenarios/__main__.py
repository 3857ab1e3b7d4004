"""``python -m scenarios N``: the same command as the ``scenarios`` console script."""

from __future__ import annotations

from .cli import main

main(prog_name="scenarios")
