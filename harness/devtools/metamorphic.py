"""The metamorphic self-test: a verdict depends on what the code does, never on where its file is
saved or how it is laid out.

    python -m harness.devtools.metamorphic                  # the whole matrix, both backends
    python -m harness.devtools.metamorphic --only reference,project-root --db sqlite

Every correct solution (``selftest.correct_solutions()``) is graded after each transformation
that keeps it correct, and must pass every task at the full tier. Every catalogue entry is graded
after each transformation that only moves it, and must still fail its task with its diagnosis.

The locations include the project root and the folder above it, where a candidate saves a second
attempt; a file put there has a name of its own, is created only if no file has that name, and is
removed when its grading ends, whatever happens (and again, if need be, when the command ends).
"""

from __future__ import annotations

import ast
import secrets
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import click

from ..paths import PROJECT_ROOT
from ..tasks import FUNCTIONS
from .selftest import (
    CatalogueEntry,
    _databases,
    _report,
    catalogue,
    check_correct,
    check_entry,
    correct_solutions,
    dialect_of,
)

__all__ = [
    "LOCATIONS",
    "TRANSFORMATIONS",
    "Case",
    "Transformation",
    "cases",
    "grade_correct",
    "grade_entry",
    "split_into_helpers",
    "transformation",
]

#: What the self-test created in the project or the folder above: removed by the grading that
#: created it (``finally``), and by the command should a grading be cut short.
_placed: set[Path] = set()
_placed_lock = threading.Lock()


@contextmanager
def _own_file(path: Path, text: str) -> Iterator[Path]:
    """Create ``path`` with ``text`` (never over an existing file), and remove it afterwards."""
    file = path.open("x", encoding="utf-8")  # "x": fails if the name is taken
    with _placed_lock:
        _placed.add(path)
    try:
        with file:
            file.write(text)
        yield path
    finally:
        _remove(path)


@contextmanager
def _own_folder(path: Path) -> Iterator[Path]:
    """Create the folder ``path`` (never an existing one), and remove it and what is in it."""
    path.mkdir()  # fails if it exists: only what the self-test made is ever removed
    with _placed_lock:
        _placed.add(path)
    try:
        yield path
    finally:
        _remove(path)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)
    with _placed_lock:
        _placed.discard(path)


def remove_leftovers() -> None:
    """Remove whatever a grading placed and did not get to remove."""
    with _placed_lock:
        leftovers = list(_placed)
    for path in leftovers:
        _remove(path)


def _unique(stem: str) -> str:
    return f"metamorphic_{stem}_{secrets.token_hex(4)}"


# --- transformations -----------------------------------------------------------------------


@dataclass(frozen=True)
class Transformation:
    """A change to a solution file that must not change its verdict. ``place(source, scratch)``
    is a context manager that gives the path to grade; ``scratch`` is a temporary folder of the
    grading's own, removed afterwards."""

    name: str
    place: Callable[[Path, Path], AbstractContextManager[Path]]
    #: True when it only moves the file (the code is unchanged): catalogue entries get it too.
    moves_only: bool = True


@contextmanager
def _in_project_root(source: Path, scratch: Path) -> Iterator[Path]:
    with _own_file(PROJECT_ROOT / f"{_unique(source.stem)}.py", source.read_text()) as path:
        yield path


@contextmanager
def _above_the_project(source: Path, scratch: Path) -> Iterator[Path]:
    with _own_file(PROJECT_ROOT.parent / f"{_unique(source.stem)}.py", source.read_text()) as path:
        yield path


@contextmanager
def _in_candidate(source: Path, scratch: Path) -> Iterator[Path]:
    folder = PROJECT_ROOT / "candidate"
    with _own_file(folder / f"{_unique(source.stem)}.py", source.read_text()) as path:
        yield path


@contextmanager
def _in_a_subfolder(source: Path, scratch: Path) -> Iterator[Path]:
    with _own_folder(PROJECT_ROOT / _unique("attempts")) as folder:
        (folder / "second").mkdir()
        path = folder / "second" / "solution.py"
        path.write_text(source.read_text(), encoding="utf-8")
        yield path


@contextmanager
def _spaces_and_unicode(source: Path, scratch: Path) -> Iterator[Path]:
    folder = scratch / "my attempts" / "ünïcode"
    folder.mkdir(parents=True)
    path = folder / "solution v2.py"
    path.write_text(source.read_text(), encoding="utf-8")
    yield path


@contextmanager
def _through_a_symlink(source: Path, scratch: Path) -> Iterator[Path]:
    link = scratch / "linked solution.py"
    link.symlink_to(source.resolve())
    yield link


def split_into_helpers(text: str) -> str:
    """Move the body of each task function into a module-level helper, ``_<name>_body``, and
    leave a thin wrapper with the same signature that awaits it."""
    tree = ast.parse(text)
    body: list[ast.stmt] = []
    for node in tree.body:
        body.append(node)
        if not (isinstance(node, ast.AsyncFunctionDef) and node.name in FUNCTIONS.values()):
            continue
        name = node.name
        node.name = f"_{name}_body"
        arguments = node.args
        call = ast.Call(
            func=ast.Name(id=node.name, ctx=ast.Load()),
            args=[
                ast.Name(id=a.arg, ctx=ast.Load()) for a in arguments.posonlyargs + arguments.args
            ],
            keywords=[
                ast.keyword(arg=a.arg, value=ast.Name(id=a.arg, ctx=ast.Load()))
                for a in arguments.kwonlyargs
            ],
        )
        if arguments.vararg:
            call.args.append(
                ast.Starred(ast.Name(id=arguments.vararg.arg, ctx=ast.Load()), ast.Load())
            )
        if arguments.kwarg:
            call.keywords.append(
                ast.keyword(arg=None, value=ast.Name(id=arguments.kwarg.arg, ctx=ast.Load()))
            )
        # The wrapper from a template: AST constructors' fields differ between Python versions.
        wrapper = ast.parse(f"async def {name}(): return await _()").body[0]
        assert isinstance(wrapper, ast.AsyncFunctionDef)
        wrapper.args, wrapper.returns = arguments, node.returns
        wrapper.body = [ast.Return(value=ast.Await(value=call))]
        body.append(wrapper)
    tree.body = body
    return ast.unparse(ast.fix_missing_locations(tree)) + "\n"


def reformat(text: str) -> str:
    """The same code, laid out by ``ast.unparse``: no comments, other quotes, other line breaks
    and blank lines, implicitly joined strings joined."""
    return "# Reformatted by the metamorphic self-test.\n\n" + ast.unparse(ast.parse(text)) + "\n"


def _rewritten(
    rewrite: Callable[[str], str],
) -> Callable[[Path, Path], AbstractContextManager[Path]]:
    @contextmanager
    def place(source: Path, scratch: Path) -> Iterator[Path]:
        path = scratch / f"{source.stem}.py"
        path.write_text(rewrite(source.read_text()), encoding="utf-8")
        yield path

    return place


TRANSFORMATIONS: tuple[Transformation, ...] = (
    Transformation("project-root", _in_project_root),
    Transformation("folder-above", _above_the_project),
    Transformation("candidate", _in_candidate),
    Transformation("subfolder", _in_a_subfolder),
    Transformation("spaces-unicode", _spaces_and_unicode),
    Transformation("symlink", _through_a_symlink),
    Transformation("split-into-helpers", _rewritten(split_into_helpers), moves_only=False),
    Transformation("reformatted", _rewritten(reformat), moves_only=False),
)
LOCATIONS = tuple(t for t in TRANSFORMATIONS if t.moves_only)


def transformation(name: str) -> Transformation:
    return next(t for t in TRANSFORMATIONS if t.name == name)


# --- gradings ------------------------------------------------------------------------------


def grade_correct(
    solution: Path, change: Transformation, db: str, *, tier: str = "full", seed: int = 1
) -> str | None:
    """None when ``solution``, transformed, passes every task on ``db``; else the diagnoses."""
    with (
        tempfile.TemporaryDirectory(prefix="kata-metamorphic-") as scratch,
        change.place(solution, Path(scratch)) as path,
    ):
        return check_correct(path, db, tier=tier, seed=seed)


def grade_entry(
    entry: CatalogueEntry, change: Transformation, db: str, *, seed: int = 1
) -> str | None:
    """None when ``entry``, moved, still fails its task with its diagnosis on ``db``."""
    with (
        tempfile.TemporaryDirectory(prefix="kata-metamorphic-") as scratch,
        change.place(entry.path, Path(scratch)) as path,
    ):
        return check_entry(entry, db, seed=seed, path=path)


@dataclass(frozen=True)
class Case:
    """One cell of the matrix: a subject, a transformation, a backend."""

    subject: str
    change: str
    db: str
    check: Callable[[], str | None]

    @property
    def backend(self) -> str:
        return dialect_of(self.db)

    @property
    def label(self) -> str:
        return f"{self.subject} @ {self.change} on {self.backend}"


def cases(databases: list[str], *, only: str = "", tier: str = "full", seed: int = 1) -> list[Case]:
    """The matrix, narrowed by ``only`` (comma-separated parts of a case's label)."""
    chosen: list[Case] = []
    for db in databases:
        for solution in correct_solutions():
            for change in TRANSFORMATIONS:
                chosen.append(
                    Case(
                        f"{solution.stem} passes",
                        change.name,
                        db,
                        partial(grade_correct, solution, change, db, tier=tier, seed=seed),
                    )
                )
        for entry in catalogue():
            if dialect_of(db) not in entry.backends:
                continue
            for change in LOCATIONS:
                chosen.append(
                    Case(
                        f"{entry.name} fails {entry.task}",
                        change.name,
                        db,
                        partial(grade_entry, entry, change, db, seed=seed),
                    )
                )
    if only:
        parts = [part.strip() for part in only.split(",") if part.strip()]
        chosen = [case for case in chosen if all(part in case.label for part in parts)]
    return chosen


@click.command()
@click.option(
    "--db",
    default=None,
    help="one backend: sqlite, postgresql or a URL (default: SQLite and PostgreSQL)",
)
@click.option(
    "--only",
    default="",
    help="only the cases whose label has every one of these (comma-separated): a solution or "
    "entry, a transformation (project-root, split-into-helpers...), a backend",
)
@click.option(
    "--tier",
    type=click.Choice(["full", "fast"]),
    default="full",
    show_default=True,
    help="the correct solutions' tier (entries use their own)",
)
@click.option("--seed", type=int, default=1, show_default=True)
@click.option("--jobs", type=int, default=2, show_default=True, help="gradings run at once")
def main(db: str | None, only: str, tier: str, seed: int, jobs: int) -> None:
    """Grade every correct solution under every transformation, and every catalogue entry
    under every move: the verdicts must not change."""
    started = time.monotonic()
    matrix = cases(_databases(db), only=only, tier=tier, seed=seed)
    if not matrix:
        raise click.UsageError(f"no case matches --only {only!r}")
    passed: dict[str, list[bool]] = {}
    try:
        with ThreadPoolExecutor(max_workers=jobs) as pool:
            futures = [(case, pool.submit(_timed, case.check)) for case in matrix]

            def outcomes() -> Iterator[tuple[str, str | None]]:
                for case, future in futures:
                    try:
                        problem, seconds = future.result()
                    except Exception as error:  # a grading that could not run is one failure
                        problem, seconds = f"could not grade: {type(error).__name__}: {error}", 0.0
                    passed.setdefault(case.backend, []).append(problem is None)
                    yield f"{case.label} ({seconds:.0f} s)", problem

            failures = _report(outcomes())
    finally:
        remove_leftovers()
    for backend, results in passed.items():
        click.echo(f"  {backend}: {sum(results)}/{len(results)}")
    click.echo(
        f"{len(matrix) - failures}/{len(matrix)} passed in {time.monotonic() - started:.0f} s"
    )
    sys.stdout.flush()
    raise SystemExit(1 if failures else 0)


def _timed(check: Callable[[], str | None]) -> tuple[str | None, float]:
    started = time.monotonic()
    return check(), time.monotonic() - started


if __name__ == "__main__":
    main()
