"""The fake world a run happens in: the fake APIs and their faults, the ledger that referees
them, crash injection, the history of statements and calls, the run's metrics, and the ``World``
that owns one run of all of it."""

from .core import World

__all__ = ["World"]
