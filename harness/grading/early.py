"""What pytest must learn before it reads the command line: installed as a ``pytest11`` entry
point, so it is loaded before the kata's ini file and ``conftest.py`` are.

pytest finds its ini file (and so the kata's settings and plugin) from the paths on the command
line *before* it knows the kata's options. In ``pytest --solution ~/attempt.py`` it takes
``~/attempt.py`` for a test path: inside the project nothing is lost (the space form works as
well as ``--solution=PATH``), but outside it pytest settles in the solution's folder, without
the kata's settings, and answers ``unrecognized arguments: --solution``. This hook turns that
into a message that says what to type.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest

#: The project this plugin belongs to (``harness/grading/early.py`` is two levels down).
_PROJECT = Path(__file__).resolve().parents[2]
#: Options of the kata that take a value: in their space form, pytest may take it for a path.
_VALUED = ("--solution", "--db", "--kata-json")


def pytest_load_initial_conftests(
    early_config: pytest.Config, parser: pytest.Parser, args: list[str]
) -> None:
    here = early_config.invocation_params.dir.resolve()
    if here != _PROJECT and _PROJECT not in here.parents:
        return  # another project's pytest: none of our business
    if early_config.inipath == _PROJECT / "pyproject.toml":
        return  # the kata's settings were found: both forms of every option work
    spaced = [i for i, arg in enumerate(args[:-1]) if arg in _VALUED]
    if not spaced:
        return
    fixed = list(args)
    for index in reversed(spaced):
        fixed[index : index + 2] = [f"{fixed[index]}={fixed[index + 1]}"]
    raise pytest.UsageError(
        f"pytest took the path after {args[spaced[0]]} for a folder of tests ({args[spaced[0] + 1]}"
        " is outside the kata), so it did not read the kata's settings. Join the option and its "
        f"value with '=':\n\n    {shlex.join(['pytest', *fixed])}\n"
    )
