"""Where things are: the harness's own package, and the kata's checkout around it.

The kata is a checkout the candidate edits (``candidate/solution.py``) and the grader reads
(``fixtures/``), which is why it is installed in place (``pip install -e .``): see the README.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["HARNESS_DIR", "KATA_HOME_ENV", "PROJECT_ROOT", "kata_home"]

#: The ``harness`` package: frames in it are the harness's, not the candidate's.
HARNESS_DIR = Path(__file__).resolve().parent
#: The checkout: ``candidate/``, ``fixtures/``, ``kata.db``.
PROJECT_ROOT = HARNESS_DIR.parent
#: Where progress, backups and drill records live; default ``PROJECT_ROOT/.kata`` (gitignored).
KATA_HOME_ENV = "KATA_HOME"


def kata_home() -> Path:
    configured = os.environ.get(KATA_HOME_ENV)
    return Path(configured).resolve() if configured else PROJECT_ROOT / ".kata"
