"""The drills, declared once: each incident (production's code, ``scenarios/<slug>.py``) with its
diagnosis (``scenarios/diagnoses/<slug>.py``), in the order ``scenarios N`` numbers them.

Every feature reads a drill from here - the command's list and help, the question and the
debrief, ``--explain``, ``--fixed``'s verdict and ``--solution``'s, the jobs a record keeps - so
a new drill is one module of production code, one of diagnosis, and one line below.
"""

from __future__ import annotations

from .diagnoses import crash_loop, duplicate_emails, pool_exhaustion, slow_throughput
from .diagnosis import Diagnosis
from .incident import Incident

__all__ = ["DIAGNOSES", "INCIDENTS", "diagnosis_of"]

_DRILLS: tuple[Diagnosis, ...] = (
    slow_throughput.DIAGNOSIS,
    duplicate_emails.DIAGNOSIS,
    pool_exhaustion.DIAGNOSIS,
    crash_loop.DIAGNOSIS,
)

DIAGNOSES: dict[int, Diagnosis] = {drill.number: drill for drill in _DRILLS}
INCIDENTS: dict[int, Incident] = {drill.number: drill.incident for drill in _DRILLS}

if list(DIAGNOSES) != list(range(1, len(_DRILLS) + 1)):
    raise ValueError(f"the drills are numbered {list(DIAGNOSES)}, not 1 to {len(_DRILLS)}")


def diagnosis_of(number: int) -> Diagnosis:
    """Incident ``number``'s diagnosis; ``LookupError`` for a number no drill has."""
    try:
        return DIAGNOSES[number]
    except KeyError:
        raise LookupError(f"no drill is numbered {number}") from None
