"""Choreographed fake services: interleavings that happen every time, not when the scheduler
allows.

Task D must hold against "two workers inside the same API call" and "a worker paused mid-call
while another moves on". Left to asyncio, either happens only now and then, so a racy solution
would pass most runs and fail some: a flaky grade. These fakes hold a call just before it reaches
the API (so the ledger records it when it really happens) until the choreography says go:

    with kata.serving(Rendezvous()):          # same-request calls of two workers meet
        ...
    async with paused_in_first_call(kata, job, "worker-2") as paused:
        ...                                    # worker-2 is inside paused.held
        await paused.resume()
"""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from harness.scope import caller_name
from harness.sql.models import Job
from harness.world.services import Services

from .kit import Kata

__all__ = ["Gate", "Pause", "Rendezvous", "copy_job", "paused_in_first_call"]


class Choreographed(Services):
    """Fake services that let a test hold a call before it reaches the API."""

    async def before_call(self, operation: str, subject: str) -> None:
        return None

    async def send_email(self, to: str, body: str, idempotency_key: str | None) -> str:
        await self.before_call("send_email", to)
        return await super().send_email(to, body, idempotency_key)

    async def get_reply(self, message_id: str) -> str:
        await self.before_call("get_reply", message_id)
        return await super().get_reply(message_id)

    async def analyze_sentiment(self, text: str) -> str:
        await self.before_call("analyze_sentiment", text)
        return await super().analyze_sentiment(text)

    async def route_customer(self, email: str, sentiment: str, idempotency_key: str | None) -> str:
        await self.before_call("route_customer", email)
        return await super().route_customer(email, sentiment, idempotency_key)


class Rendezvous(Choreographed):
    """Each call waits (briefly) for a second call of the same request, so that two workers on one
    job are inside the same API call at the same moment."""

    def __init__(self, patience: float = 0.25) -> None:
        super().__init__()
        self.patience = patience
        self._waiting: dict[tuple[str, str], asyncio.Event] = {}

    async def before_call(self, operation: str, subject: str) -> None:
        request = (operation, subject)
        if (partner := self._waiting.pop(request, None)) is not None:
            partner.set()
            return
        arrived = self._waiting[request] = asyncio.Event()
        try:
            async with asyncio.timeout(self.patience):
                await arrived.wait()
        except TimeoutError:
            pass  # nobody came: the other worker had nothing to call
        finally:
            if self._waiting.get(request) is arrived:
                del self._waiting[request]


class Gate(Choreographed):
    """Holds ``worker``'s API calls until the test opens the gate."""

    def __init__(self, worker: str) -> None:
        super().__init__()
        self.worker = worker
        self.held: str | None = None
        self.arrived = asyncio.Event()
        self.opened = asyncio.Event()

    async def before_call(self, operation: str, subject: str) -> None:
        if caller_name() == self.worker and not self.opened.is_set():
            self.held = operation
            self.arrived.set()
            await self.opened.wait()


@dataclasses.dataclass
class Pause:
    """A worker held in its first API call of ``process_job(read)`` (or ``send_email_step``)."""

    gate: Gate
    task: asyncio.Task[object]
    read: Job

    @property
    def held(self) -> str | None:
        """The API call the worker is held in (None: it returned without calling one)."""
        return self.gate.held

    async def resume(self) -> None:
        """Let the worker go on, and wait for its ``process_job`` to return (or raise)."""
        self.gate.opened.set()
        await self.task


@asynccontextmanager
async def paused_in_first_call(
    kata: Kata, job: Job, worker: str, gate: Gate | None = None, function: str = "process_job"
) -> AsyncIterator[Pause]:
    """``worker`` starts ``function`` (``process_job``, or Task C's ``send_email_step``) on
    ``job`` and is held at its first API call for the block. However the block ends, the worker
    is let go and not left behind. Pass the ``gate`` when the job was set up on it (an email it
    delivered, for a job past send_email)."""
    if gate is None:
        gate = Gate(worker)
    elif gate.worker != worker:
        raise ValueError(f"the gate holds {gate.worker}'s calls, not {worker}'s")
    with kata.serving(gate):
        read = await kata.fresh(job)
        task = asyncio.create_task(
            kata.call(function, copy_job(read), worker=worker, job_id=job.id)
        )
        arrival = asyncio.ensure_future(gate.arrived.wait())
        await asyncio.wait({arrival, task}, timeout=10, return_when=asyncio.FIRST_COMPLETED)
        arrival.cancel()
        try:
            yield Pause(gate, task, read)
        finally:
            gate.opened.set()
            if not task.done():
                await asyncio.wait({task}, timeout=5)
                task.cancel()
            if task.done() and not task.cancelled():
                task.exception()  # retrieved: reported through resume(), or moot after a failure


def copy_job(job: Job) -> Job:
    """Another object for the same row: what a second worker (or an old variable) holds."""
    return Job.from_row(job.as_dict())
