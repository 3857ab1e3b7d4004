"""Incident drills: on call for the campaign worker, in front of a live dashboard.

    scenarios 1            # the campaign is crawling
    scenarios 2            # customers got the email more than once
    scenarios 3            # PoolTimeout errors and p99 spikes under the launch burst
    scenarios 4            # workers keep dying, throughput falls in waves

Each drill runs real worker code (the incident module: production's code, with its fix at the
bottom) against a real database and the fake APIs, shows what it measures, and asks for a
diagnosis. Each run is recorded (``record``, kept by ``store`` under ``.kata/drills/``) so that
the debrief, ``--explain``, ``--fixed``, ``--replay`` and ``--report`` quote the run that was
watched. The drills are declared once, in ``catalog``: each incident with its diagnosis
(``diagnoses/``); ``INCIDENTS`` maps each number to its ``Incident``.
"""

from __future__ import annotations

from .catalog import INCIDENTS
from .incident import Deployment, Incident, Load, Variant
from .measure import RunResult, run_isolated, run_load
from .snapshot import Snapshot
from .totals import Totals, TotalsMismatch, verify_totals

__all__ = [
    "INCIDENTS",
    "Deployment",
    "Incident",
    "Load",
    "RunResult",
    "Snapshot",
    "Totals",
    "TotalsMismatch",
    "Variant",
    "run_isolated",
    "run_load",
    "verify_totals",
]
