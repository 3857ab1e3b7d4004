"""Claimers in separate OS processes: the contract's "separate processes" for Task A.

Each process loads the solution from its path (guarded as in the grading process, see
``tamper``), opens its own pool to the same database, and runs a few claiming workers until they
get ``None``. It returns what it claimed and any error, as plain data, so that the grading test
can check "exactly once" across processes. ``worker_processes`` kills them if the test ends
first (timed out): a claim that never returns must not outlive its test.
"""

from __future__ import annotations

import asyncio
import importlib
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing.context import BaseContext
from pathlib import Path

from ..scope import acting_as
from ..sql.config import DatabaseConfig
from ..sql.database import open_database
from ..tasks import not_started
from ..worker.solutions import load_solution
from .tamper import install_guard
from .verdicts import is_skip, skip_diagnosis

__all__ = ["claim_in_process", "worker_processes"]

#: Imported before the guard, as in the grading process, where the solution finds them imported:
#: importing pytest with the solution on the stack builds named tuples, which the guard refuses.
_AS_IN_THE_GRADER = ("pytest",)


@contextmanager
def worker_processes(
    count: int, context: BaseContext | None = None
) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``count`` processes of ``context`` (fresh, spawned ones by default), shut down
    after the block; killed instead of waited for when the block fails (a time limit, a blocked
    loop)."""
    pool = ProcessPoolExecutor(count, mp_context=context or multiprocessing.get_context("spawn"))
    try:
        yield pool
    except BaseException:
        processes = list((getattr(pool, "_processes", None) or {}).values())
        for process in processes:
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)
        for process in processes:
            process.join(timeout=5)
        raise
    pool.shutdown(wait=True)


def claim_in_process(
    config: DatabaseConfig, solution_path: str, prefix: str, workers: int
) -> tuple[list[tuple[str, int]], str | None]:
    """Run ``workers`` claimers in this process; return (worker, job id) claims and an error."""
    return asyncio.run(_claim(config, Path(solution_path), prefix, workers))


async def _claim(
    config: DatabaseConfig, path: Path, prefix: str, workers: int
) -> tuple[list[tuple[str, int]], str | None]:
    for name in _AS_IN_THE_GRADER:
        importlib.import_module(name)
    install_guard(path)
    solution = load_solution(path)
    claims: list[tuple[str, int]] = []

    async def worker(name: str) -> None:
        while True:
            with acting_as(name):
                job = await solution.claim_next_job(name)
            if job is None:
                return
            claims.append((name, job.id))

    try:
        async with open_database(config):
            await asyncio.gather(*(worker(f"{prefix}-w{i + 1}") for i in range(workers)))
    except NotImplementedError:  # the stub: "not started", as every other test of Task A says
        return claims, not_started("claim_next_job")
    except Exception as error:  # reported by the test in the candidate's terms
        return claims, f"{type(error).__name__}: {error}"
    except BaseException as error:
        if not is_skip(error):
            raise
        # Described here, where the traceback still has the solution's frames.
        return claims, skip_diagnosis(error, path, "claim_next_job")
    return claims, None
