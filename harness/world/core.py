"""A run's world: the database, the fake services with their ledger, the crash plan and the
metrics, made once and entered once.

    world = World(database, Services(FaultPlan.chaos(seed)), crash_plan=plan)
    with world.active():
        report = await Runner(solution, config, world=world).run()

Whoever runs workers builds one - the grader's kata fixture, the end-to-end test, ``dev``, the
drills and the stress command - and passes it explicitly to the runner; the candidate's code finds
its parts through the scope (``harness.scope``) that ``active()`` enters.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from ..scope import scoped
from ..sql.database import Database
from .crashes import CrashPlan
from .metrics import RunMetrics
from .services import Services

__all__ = ["World"]


@dataclass(eq=False)
class World:
    database: Database
    services: Services = field(default_factory=Services)
    crash_plan: CrashPlan | None = None
    metrics: RunMetrics = field(default_factory=RunMetrics)
    #: Where the runner's own bookkeeping statements go (recovering expired claims, counting
    #: jobs): the workers' database unless a drill gives its monitor a small pool of its own, so
    #: that an exhausted pool can neither silence the monitor nor be made worse by it. Every figure
    #: the monitor samples (pool, open transactions, round trips) is still ``database``'s.
    bookkeeping: Database | None = None

    @property
    def monitor_database(self) -> Database:
        return self.bookkeeping or self.database

    @contextmanager
    def active(self) -> Iterator[World]:
        """Make this world the one the code inside talks to (in this task and its children)."""
        with scoped(database=self.database, services=self.services, crash_plan=self.crash_plan):
            yield self

    @contextmanager
    def with_services(self, services: Services) -> Iterator[Services]:
        """The same world with other services (another fault plan) for the block."""
        previous = self.services
        self.services = services
        try:
            with scoped(services=services):
                yield services
        finally:
            self.services = previous
