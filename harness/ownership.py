"""Whose code a frame is: the solution's, decided by its own file, never by its folder.

The guard refuses things only to the candidate's code, the timelines name the candidate's line,
and the diagnoses quote it; all of them ask this module. A solution is its file (and, for a
catalogue entry, the reference file it borrows functions from): whatever else shares its folder
(the harness and pytest, when a candidate saves ``attempt2.py`` in the project root) is not.

The files are registered by ``load_solution`` and the guard, once per process: a grading process
grades one solution. Only they are the candidate's to the guard. A line is named from them first;
where none is on the stack (a drill running production's own code, the harness's own tests), from
code that is not the harness's, the standard library's nor an installed package's.
"""

from __future__ import annotations

import os
import sys
import sysconfig
from pathlib import Path
from types import FrameType

from .paths import HARNESS_DIR

__all__ = [
    "code_site",
    "is_program_code",
    "is_solution_file",
    "register_solution",
    "solution_files",
]

_solutions: set[str] = set()
_known: dict[str, bool] = {}


def register_solution(path: str | Path) -> None:
    """Count the file at ``path`` (as given and resolved, since a symlink is loaded resolved) as
    the candidate's code in this process."""
    _solutions.update({os.path.abspath(path), os.path.realpath(path)})
    _known.clear()


def solution_files() -> frozenset[str]:
    return frozenset(_solutions)


def is_solution_file(filename: str) -> bool:
    """Whether code compiled from ``filename`` is a registered solution's."""
    known = _known.get(filename)
    if known is None:
        known = not filename.startswith("<") and (
            os.path.abspath(filename) in _solutions or os.path.realpath(filename) in _solutions
        )
        _known[filename] = known
    return known


_HARNESS = str(HARNESS_DIR.resolve()) + os.sep
_LIBRARIES = tuple(
    str(Path(sysconfig.get_paths()[name]).resolve()) + os.sep
    # "scripts": the console scripts of installed packages (the ``pytest`` command itself).
    for name in ("stdlib", "platstdlib", "purelib", "platlib", "scripts")
)
_programs: dict[str, bool] = {}


def is_program_code(filename: str) -> bool:
    """Code of a program the harness runs, where no solution is on the stack: neither the
    harness's, the standard library's nor an installed package's (a drill's production code, the
    harness's own tests, a helper module the solution imports)."""
    known = _programs.get(filename)
    if known is None:
        if filename.startswith("<"):
            known = False
        else:
            path = os.path.realpath(filename)
            known = not (path.startswith(_HARNESS) or path.startswith(_LIBRARIES))
        _programs[filename] = known
    return known


def code_site(skip: int = 1) -> str | None:
    """ "solution.py:34 in send_email_step()": the innermost frame on the stack of the solution's
    own file, else of other program code (``is_program_code``), for the timelines, the ledger and
    the refusals that name the caller's line; None when only the harness and libraries are on
    the stack (the grader's own statements)."""
    first = sys._getframe(skip)
    for mine in (is_solution_file, is_program_code):
        frame: FrameType | None = first
        while frame is not None:
            code = frame.f_code
            if mine(code.co_filename):
                return f"{Path(code.co_filename).name}:{frame.f_lineno} in {code.co_name}()"
            frame = frame.f_back
    return None
