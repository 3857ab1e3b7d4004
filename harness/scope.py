"""What the running code is part of: the harness's one context variable.

The candidate never passes a database, a fake API or a worker id around: ``execute_sql``,
``transaction()``, ``send_email`` and the ORM find them in the current *scope*, and so do the
harness's own referees (who made this call, on which job, inside which transaction, in which life
of a worker). A scope is immutable; entering one (``scoped``) makes a copy with some fields
changed, for the block, in this asyncio task and the tasks it spawns. It is one ``ContextVar``,
as Tortoise ORM keeps its connections in one context, so that a run's state has one owner:

* ``database``, ``services``, ``crash_plan``: the run's world, entered once by whoever runs it
  (``World.active()``: the runner, the grader's kata fixture, the drills, the stress command);
* ``worker_id``, ``job_id``: who is acting, set by the runner around each call of the candidate's
  code (``acting_as``);
* ``transaction``: the transaction this task holds (``harness.sql.transactions``);
* ``life``: one call of a worker into the candidate's code, seen as one life of its process
  (``harness.world.crashes.worker_life``);
* ``latency``: whether statements pay the simulated round-trip latency of the database
  (``DatabaseConfig.round_trip_latency``). It models what the candidate's statements cost, so a
  worker's always do (``acting_as``); the grader turns it off for its own setup and checks,
  which are not what is measured and would only make every verdict wait longer.

This module sits at the bottom of the harness: it imports none of the types it carries.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .sql.database import Database
    from .sql.transactions import Transaction
    from .world.crashes import CrashPlan, WorkerLife
    from .world.services import Services

__all__ = ["Scope", "acting_as", "caller_name", "current", "scoped"]


@dataclass(frozen=True)
class Scope:
    database: Database | None = None
    services: Services | None = None
    crash_plan: CrashPlan | None = None
    worker_id: str | None = None
    job_id: int | None = None
    transaction: Transaction | None = None
    life: WorkerLife | None = None
    latency: bool = True

    def held_transaction(self) -> Transaction | None:
        """The transaction the *running task* holds. A task spawned inside a transaction block
        inherits the scope but not the transaction: it borrows connections of its own."""
        tx = self.transaction
        if tx is None or tx.task is not current_task():
            return None
        return tx


_NOWHERE = Scope()
_scope: ContextVar[Scope | None] = ContextVar("kata_scope", default=None)


def current() -> Scope:
    return _scope.get() or _NOWHERE


@contextmanager
def scoped(**changes: Any) -> Iterator[Scope]:
    """Enter a copy of the current scope with ``changes`` for the block."""
    scope = replace(current(), **changes)
    token = _scope.set(scope)
    try:
        yield scope
    finally:
        _scope.reset(token)


@contextmanager
def acting_as(worker_id: str | None = None, job_id: int | None = None) -> Iterator[None]:
    """Attribute everything inside to ``worker_id`` (and ``job_id``): a worker's statements pay
    the simulated round-trip latency, even inside the grader's own code."""
    with scoped(worker_id=worker_id, job_id=job_id, latency=True):
        yield


def caller_name() -> str:
    """The worker id if one is set, else the asyncio task's name (for ledgers and messages)."""
    worker = current().worker_id
    if worker is not None:
        return worker
    task = current_task()
    return task.get_name() if task is not None else "main"


def current_task() -> asyncio.Task[Any] | None:
    try:
        return asyncio.current_task()
    except RuntimeError:
        return None
