"""Fixtures of the harness's own suite: every database test runs on SQLite and on PostgreSQL.

``KATA_TEST_BACKENDS`` narrows the list (``sqlite``, ``postgresql``); the default is both, and a
PostgreSQL that cannot be reached is an error, never a skip: CI must not pass by not testing.
``KATA_TEST_POSTGRES_URL`` says where PostgreSQL is (default: the local ``test`` database).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from harness.paths import PROJECT_ROOT
from harness.sql.config import DatabaseConfig, test_postgres_url
from harness.sql.database import Database
from harness.sql.isolation import isolated_database

POSTGRES_URL = test_postgres_url()
BACKENDS = [
    name.strip()
    for name in os.environ.get("KATA_TEST_BACKENDS", "sqlite,postgresql").split(",")
    if name.strip()
]


@pytest.fixture(autouse=True, scope="session")
def _kata_home_apart(tmp_path_factory: pytest.TempPathFactory) -> None:
    """The suite grades solutions through pytest, ``grade`` and ``dev``; what it records goes to a
    progress file of its own, never to the candidate's ``.kata/`` (a test that wants a home of
    its own still sets ``KATA_HOME``)."""
    os.environ.setdefault("KATA_HOME", str(tmp_path_factory.mktemp("kata-home")))


def graded_json(*args: str, tmp_path: Path, timeout: float = 600) -> dict[str, Any]:
    """Grade as a candidate does, ``pytest harness/grading ARGS`` in a child process (with its
    own progress file), and return its ``--kata-json`` report."""
    report = tmp_path / "report.json"
    subprocess.run(
        [sys.executable, "-m", "pytest", str(PROJECT_ROOT / "harness" / "grading"), *args,
         f"--kata-json={report}", "-q", "-p", "no:cacheprovider"],
        cwd=PROJECT_ROOT, env={**os.environ, "KATA_HOME": str(tmp_path)},
        capture_output=True, timeout=timeout, check=False,
    )  # fmt: skip
    report_json: dict[str, Any] = json.loads(report.read_text())
    return report_json


def base_config(backend: str, **options: object) -> DatabaseConfig:
    if backend == "sqlite":
        # Tests of behaviour don't need the simulated latency; tests of latency set it.
        return DatabaseConfig(url="sqlite:///unused.db", latency=0.0).with_options(**options)
    return DatabaseConfig(url=POSTGRES_URL).with_options(**options)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def database(backend: str) -> AsyncIterator[Database]:
    """A fresh, active database with the kata's schema, on each backend."""
    async with isolated_database(base_config(backend), purpose="test") as database:
        yield database
