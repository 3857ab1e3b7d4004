"""Incident drills: on call for the campaign worker, in front of a live dashboard.

    scenarios 1            # the campaign is crawling
    scenarios 2            # customers got the email more than once
    scenarios 3            # PoolTimeout errors and p99 spikes under the launch burst

Each drill runs real worker code (the incident module: production's code, with its fix at the
bottom) against a real database and the fake APIs, shows what it measures, and asks for a
diagnosis. Each run is recorded (``record``, kept by ``store`` under ``.kata/drills/``) so that
the debrief, ``--explain``, ``--fixed``, ``--replay`` and ``--report`` quote the run that was
watched. ``INCIDENTS`` maps each number to its ``Incident``.
"""

from __future__ import annotations

from .duplicate_emails import INCIDENT as DUPLICATE_EMAILS
from .incident import Deployment, Incident, Load, Variant
from .measure import RunResult, run_isolated, run_load
from .pool_exhaustion import INCIDENT as POOL_EXHAUSTION
from .slow_throughput import INCIDENT as SLOW_THROUGHPUT
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

INCIDENTS: dict[int, Incident] = {
    incident.number: incident for incident in (SLOW_THROUGHPUT, DUPLICATE_EMAILS, POOL_EXHAUSTION)
}
