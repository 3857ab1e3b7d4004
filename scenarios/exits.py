"""A drill's exit status: what ``scenarios N`` returns to a shell or a script."""

from __future__ import annotations

__all__ = ["EXIT_FLAWED", "EXIT_MISMATCH", "EXIT_UNLOADABLE"]

#: The answer is wrong, or the candidate's solution shows the flaw (or could not run).
EXIT_FLAWED = 1
#: A solution that does not load, or a recorded run that cannot be found.
EXIT_UNLOADABLE = 2
#: The board's totals disagree with the database or the ledger: a bug in the drill.
EXIT_MISMATCH = 3
