"""The harness's context variables: who is running, on which job.

The runner sets these around each ``process_job`` call so that the fake services and the database
layer can attribute every call, write and violation to a worker and a job without the candidate
passing anything along. They are ``ContextVar``s, so each asyncio task sees its own values and
tasks spawned inside inherit them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["acting_as", "caller_name", "current_job_id", "current_worker_id"]

current_worker_id: ContextVar[str | None] = ContextVar("kata_worker_id", default=None)
current_job_id: ContextVar[int | None] = ContextVar("kata_job_id", default=None)


@contextmanager
def acting_as(worker_id: str | None = None, job_id: int | None = None) -> Iterator[None]:
    """Attribute everything inside to ``worker_id`` (and ``job_id``)."""
    worker_token = current_worker_id.set(worker_id)
    job_token = current_job_id.set(job_id)
    try:
        yield
    finally:
        current_job_id.reset(job_token)
        current_worker_id.reset(worker_token)


def caller_name() -> str:
    """The worker id if one is set, else the asyncio task's name (for ledgers and messages)."""
    worker = current_worker_id.get()
    if worker is not None:
        return worker
    try:
        task = asyncio.current_task()
    except RuntimeError:
        task = None
    return task.get_name() if task is not None else "main"
