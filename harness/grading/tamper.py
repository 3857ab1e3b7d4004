"""Keeping the candidate's code from damaging or fooling the grader that runs it.

The solution runs inside the grading process (the supervised child, see ``supervisor.py``), so
it could reach everything the grader relies on. Two defences, installed before it is loaded:

* the guard, an audit hook (permanent once added: Python has no way to remove one) that refuses,
  while the solution's own code is on the stack, what no solution needs: writing or deleting
  files outside the temporary directory, changing the working directory or the environment,
  sending signals, starting or forking processes, ctypes, ``gc`` introspection, ``exec``, new
  audit hooks, raising resource limits. The operation raises ``ForbiddenByGrader`` (a
  ``PermissionError``) and is recorded, so that the test fails even if the solution swallows
  it. Its SIGALRM, SIGINT and SIGXFSZ handlers and the alarm timer are guarded the same way,
  and ``os._exit`` says where it was called before the process ends;
* the snapshot: the identities of the harness's functions and classes (and their methods and
  code), of pytest's and asyncio's, of the builtins and of pytest's hook implementations,
  compared after the solution is loaded and after every graded test. A solution that replaced
  one ("kit.graded", a fake service's recorder, ``builtins.print``) fails every task.

Neither is a sandbox: code that means to can still get around them (``fixtures/solutions/
hostile/README.md`` says how), but no solution does any of this by accident, or gets a pass
for it without a deliberate, visible effort.
"""

from __future__ import annotations

import operator
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import BuiltinFunctionType, CodeType, FrameType, FunctionType, ModuleType
from typing import Any, NoReturn

from ..ownership import is_solution_file, register_solution
from ..paths import HARNESS_DIR, PROJECT_ROOT

__all__ = [
    "ForbiddenByGrader",
    "Snapshot",
    "candidate_frame",
    "exit_now",
    "install_guard",
    "is_candidate_file",
    "outermost_candidate_frame",
    "raised_by_solution",
    "running_threads",
    "violations",
    "watch_sigint",
    "where",
]

_HARNESS = HARNESS_DIR


class ForbiddenByGrader(PermissionError):
    """An operation the grader refuses to a solution."""


@dataclass
class _Guard:
    #: Where a solution may write files (the temporary directory).
    writable: tuple[str, ...] = ()
    #: Never writable, wherever it lies: the project's own files.
    protected: tuple[str, ...] = ()
    installed: bool = False
    violations: list[str] = field(default_factory=list)
    real_exit: Callable[[int], NoReturn] = os._exit
    on_exit: Callable[[int, str], None] | None = None


_guard = _Guard()


def is_candidate_file(filename: str) -> bool:
    """Whether code from ``filename`` is the candidate's: the solution's own file, never the
    files that share its folder (``harness.ownership``)."""
    return is_solution_file(filename)


def candidate_frame(frame: FrameType | None) -> FrameType | None:
    """The innermost frame of the candidate's code at or below ``frame``, if any."""
    while frame is not None:
        if is_candidate_file(frame.f_code.co_filename):
            return frame
        frame = frame.f_back
    return None


def outermost_candidate_frame(frame: FrameType | None) -> FrameType | None:
    found = None
    while frame is not None:
        if is_candidate_file(frame.f_code.co_filename):
            found = frame
        frame = frame.f_back
    return found


def where(frame: FrameType) -> str:
    return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno} in {frame.f_code.co_name}()"


def violations() -> list[str]:
    """What the solution tried and was refused, in order (kept for the whole process)."""
    return _guard.violations


def running_threads() -> list[str]:
    """Threads (other than this one) that are running the candidate's code right now."""
    frames = sys._current_frames()
    found = []
    for thread in threading.enumerate():
        if thread is threading.current_thread() or thread.ident is None:
            continue
        frame = candidate_frame(frames.get(thread.ident))
        if frame is not None:
            found.append(f"a thread the solution started is still running, at {where(frame)}")
    return found


# --- the guard -----------------------------------------------------------------------------------

_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_TRUNC
#: Audit events refused outright while the candidate's code is on the stack.
_REFUSED = {
    "os.kill": "send a signal to a process",
    "os.killpg": "send a signal to a process group",
    "signal.pthread_kill": "send a signal to a thread",
    "os.fork": "fork the grading process",
    "os.forkpty": "fork the grading process",
    "os.posix_spawn": "start a process",
    "os.spawn": "start a process",
    "os.exec": "replace the grading process (exec)",
    "os.system": "run a shell command",
    "subprocess.Popen": "start a process",
    "pty.spawn": "start a process",
    "os.chdir": "change the working directory",
    "os.chroot": "change the root directory",
    "os.putenv": "change an environment variable",
    "os.unsetenv": "change an environment variable",
    "resource.setrlimit": "change a resource limit",
    "resource.prlimit": "change a resource limit",
    "gc.get_objects": "walk the grader's objects (gc.get_objects)",
    "gc.get_referrers": "walk the grader's objects (gc.get_referrers)",
    "gc.get_referents": "walk the grader's objects (gc.get_referents)",
    "sys.addaudithook": "add an audit hook",
}
#: Audit events refused when the path they touch is outside the writable directories:
#: event -> the positions of its path arguments.
_PATHS = {
    "os.remove": (0,),
    "os.rmdir": (0,),
    "shutil.rmtree": (0,),
    "os.rename": (0, 1),
    "os.truncate": (0,),
    "os.chmod": (0,),
    "os.chown": (0,),
    "os.link": (0, 1),
    "os.symlink": (1,),
    "os.mkdir": (0,),
    "os.utime": (0,),
    "os.setxattr": (0,),
    "os.removexattr": (0,),
}
_VERBS = {
    "os.remove": "delete",
    "os.rmdir": "delete the directory",
    "shutil.rmtree": "delete the directory tree",
    "os.rename": "rename",
    "os.truncate": "truncate",
    "os.chmod": "change the permissions of",
    "os.chown": "change the owner of",
    "os.link": "link",
    "os.symlink": "make a symbolic link at",
    "os.mkdir": "create the directory",
    "os.utime": "change the times of",
    "os.setxattr": "change the attributes of",
    "os.removexattr": "change the attributes of",
}


def _writable(path: Any) -> bool:
    if isinstance(path, int):
        return False  # a file descriptor: what it is cannot be told cheaply, and no solution
    try:  # needs to write through one
        text = os.path.abspath(os.fsdecode(path))
    except (TypeError, ValueError):
        return False
    # The project is never writable, even when it lives inside the temporary directory (a CI
    # checkout under /tmp, say): its files are what a solution must not touch.
    return (text + os.sep).startswith(_guard.writable) and not (text + os.sep).startswith(
        _guard.protected
    )


def _refusal(event: str, args: tuple[Any, ...]) -> str | None:
    """What the event would do, if the grader refuses it to a solution; else None."""
    if event == "open":
        path, mode, flags = args
        writes = (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
            isinstance(flags, int) and flags & _WRITE_FLAGS
        )
        if writes and not isinstance(path, int) and not _writable(path):
            return f"write the file {os.fsdecode(path)}"
        return None
    if event in _PATHS:
        paths = [args[i] for i in _PATHS[event] if i < len(args)]
        if all(_writable(p) for p in paths):
            return None
        shown = " to ".join(repr(os.fsdecode(p)) if not isinstance(p, int) else "?" for p in paths)
        return f"{_VERBS[event]} {shown}"
    if event in _REFUSED:
        what = _REFUSED[event]
        if event in ("os.kill", "os.killpg") and len(args) == 2:
            target = {os.getpid(): " (itself)", os.getppid(): " (the grader)"}.get(args[0], "")
            what = f"send signal {_signal_name(args[1])} to process {args[0]}{target}"
        elif event in ("os.putenv", "os.unsetenv") and args:
            what = f"change the environment variable {os.fsdecode(args[0])}"
        elif event == "os.chdir" and args:
            what = f"change the working directory to {args[0]!r}"
        return what
    if event.startswith("ctypes."):
        return "call C code through ctypes"
    if event == "object.__setattr__" and args and isinstance(args[0], FunctionType):
        owner = args[0]
        if not is_candidate_file(owner.__code__.co_filename):
            return f"replace the code of {owner.__module__}.{owner.__qualname__}"
    return None


def _signal_name(number: Any) -> str:
    try:
        return signal.Signals(number).name
    except ValueError:
        return str(number)


_WATCHED_EVENTS = frozenset({"open", "object.__setattr__", "exec", "compile", *_PATHS, *_REFUSED})


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in _WATCHED_EVENTS and not event.startswith("ctypes."):
        return
    caller = sys._getframe(1)
    if event in ("exec", "compile"):
        # Only the candidate's own exec/eval/compile: the standard library generates code for
        # it (dataclasses, namedtuple), and so does the import system.
        if caller is None or not is_candidate_file(caller.f_code.co_filename):
            return
        refused: str | None = "run generated code (exec, eval or compile)"
    else:
        if caller is not None and caller.f_code.co_filename.startswith("<frozen importlib"):
            return  # the import system caching bytecode (it copes with a refusal anyway)
        refused = _refusal(event, args)
    if refused is None:
        return
    frame = candidate_frame(caller)
    if frame is None:
        return
    _refuse(refused, frame)


def _refuse(what: str, frame: FrameType) -> None:
    message = f"the solution tried to {what}, at {where(frame)}"
    _guard.violations.append(message)
    raise ForbiddenByGrader(f"the grader does not let a solution {what}")


def _guarded_signal(original: Callable[..., Any]) -> Callable[..., Any]:
    watched = {signal.SIGALRM, signal.SIGINT, getattr(signal, "SIGXFSZ", signal.SIGALRM)}

    def signal_(signalnum: Any, handler: Any) -> Any:
        frame = candidate_frame(sys._getframe(1))
        if frame is not None and signalnum in watched:
            _refuse(f"change the {_signal_name(signalnum)} handler", frame)
        return original(signalnum, handler)

    return signal_


def _guarded_timer(original: Callable[..., Any], name: str) -> Callable[..., Any]:
    def timer(*args: Any) -> Any:
        frame = candidate_frame(sys._getframe(1))
        if frame is not None:
            _refuse(f"change the grader's alarm ({name})", frame)
        return original(*args)

    return timer


def _recording_exit(status: int) -> NoReturn:
    frame = candidate_frame(sys._getframe(1))
    if frame is not None and _guard.on_exit is not None:
        try:
            _guard.on_exit(status, where(frame))
        finally:
            _guard.real_exit(status)
    _guard.real_exit(status)


def install_guard(solution: Path, on_exit: Callable[[int, str], None] | None = None) -> None:
    """Guard this process against the solution at ``solution`` (its own file: code beside it
    in the same folder, such as the harness when it is saved in the project root, is not its)."""
    register_solution(solution)
    _guard.writable = (
        os.path.abspath(tempfile.gettempdir()) + os.sep,
        os.devnull + os.sep,
        "/dev/",
    )
    _guard.protected = (str(PROJECT_ROOT.resolve()) + os.sep, str(PROJECT_ROOT) + os.sep)
    _guard.on_exit = on_exit
    if _guard.installed:
        return
    _guard.installed = True
    _guard.real_exit = os._exit
    os._exit = _recording_exit
    import _signal

    modules: tuple[Any, ...] = (signal, _signal)
    for module in modules:
        module.signal = _guarded_signal(module.signal)
        for name in ("setitimer", "alarm", "pthread_sigmask"):
            if hasattr(_signal, name):
                setattr(module, name, _guarded_timer(getattr(_signal, name), name))
    sys.addaudithook(_audit)


_sigint = {"watching": False, "received": False}


def watch_sigint() -> None:
    """Tell a real SIGINT (Ctrl-C) from a ``KeyboardInterrupt`` the solution raised itself."""

    def received(signum: int, frame: FrameType | None) -> None:
        _sigint["received"] = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, received)
    _sigint["watching"] = True


def raised_by_solution(error: BaseException) -> bool:
    """Whether ``error`` (a KeyboardInterrupt or SystemExit) is the solution's own doing, not the
    user's Ctrl-C (only told apart where ``watch_sigint`` runs: elsewhere, trust it)."""
    if isinstance(error, KeyboardInterrupt):
        return _sigint["watching"] and not _sigint["received"]
    return isinstance(error, SystemExit)


def exit_now(status: int) -> NoReturn:
    """End this process at once (the grader's own exit, not recorded as the solution's)."""
    _guard.real_exit(status)


# --- the snapshot --------------------------------------------------------------------------------

#: Besides every ``harness`` module: what the grading code calls and a solution could replace.
_WATCHED = (
    "builtins",
    "os",
    "time",
    "signal",
    "_signal",
    "asyncio",
    "asyncio.tasks",
    "asyncio.events",
    "asyncio.base_events",
    "asyncio.timeouts",
    "asyncio.runners",
    "pytest",
    "_pytest.outcomes",
    "_pytest.runner",
    "_pytest.reports",
    "_pytest.python",
    "_pytest.fixtures",
    "_pytest.main",
    "_pytest.terminal",
    "_pytest.capture",
    "pytest_asyncio.plugin",
)
_CALLABLE = (FunctionType, BuiltinFunctionType, type, staticmethod, classmethod, property)


class Snapshot:
    """Identities of what the grader relies on, to tell whether anything replaced them.

    Checked after every test, so kept cheap: each namespace's watched names and values are
    compared in one pass of C loops (``map``), labels are only looked at once something moved.
    """

    def __init__(self) -> None:
        #: (a namespace, its watched names, what each was, what each is called)
        self.namespaces: list[
            tuple[Mapping[str, object], tuple[str, ...], tuple[object, ...], tuple[str, ...]]
        ] = []
        #: (the watched functions, the code each had, what each is called)
        self.functions: list[tuple[FunctionType, CodeType, str]] = []
        #: (what it is called, pytest's hook caller, the implementations it had)
        self.hooks: list[tuple[str, Any, tuple[object, ...]]] = []
        self._watched: tuple[FunctionType, ...] = ()
        self._codes: tuple[CodeType, ...] = ()

    @classmethod
    def take(cls, hooks: Any = None) -> Snapshot:
        snapshot = cls()
        names = [n for n in sys.modules if n == "harness" or n.startswith("harness.")]
        names += [n for n in _WATCHED if n in sys.modules]
        modules = [n for n in names if isinstance(sys.modules[n], ModuleType)]
        snapshot._watch(sys.modules, [(n, f"sys.modules[{n!r}]") for n in modules])
        for name in modules:
            snapshot._members(
                name, vars(sys.modules[name]), top=True, classes=name != "builtins", module=name
            )
        if hooks is not None:
            for hook_name, caller in sorted(vars(hooks).items()):
                if hasattr(caller, "get_hookimpls"):
                    snapshot.hooks.append(
                        (f"pytest's hook {hook_name}", caller, _implementations(caller))
                    )
        snapshot._codes = tuple(code for _, code, _ in snapshot.functions)
        snapshot._watched = tuple(function for function, _, _ in snapshot.functions)
        return snapshot

    def _watch(self, namespace: Mapping[str, Any], named: list[tuple[str, str]]) -> None:
        if named:
            keys = tuple(key for key, _ in named)
            values = tuple(namespace[key] for key in keys)
            self.namespaces.append((namespace, keys, values, tuple(label for _, label in named)))

    def _members(
        self, prefix: str, namespace: Mapping[str, Any], *, top: bool, classes: bool, module: str
    ) -> None:
        named = []
        for attr, value in list(namespace.items()):
            if not isinstance(value, _CALLABLE) or (top and attr.startswith("__")):
                continue
            label = f"{prefix}.{attr}"
            named.append((attr, label))
            function = getattr(value, "__func__", value)
            if isinstance(value, property):
                function = value.fget
            if isinstance(function, FunctionType):
                self.functions.append((function, function.__code__, f"{label}.__code__"))
            if classes and isinstance(value, type) and value.__module__ == module:
                self._members(label, value.__dict__, top=False, classes=False, module=module)
        self._watch(namespace, named)

    def changes(self) -> list[str]:
        """What differs from when the snapshot was taken ("harness.grading.kit.graded")."""
        changed = []
        for namespace, keys, values, labels in self.namespaces:
            if not all(map(operator.is_, map(namespace.get, keys), values)):
                changed += [
                    label
                    for key, value, label in zip(keys, values, labels, strict=True)
                    if namespace.get(key) is not value
                ]
        if not all(map(operator.is_, map(_code, self._watched), self._codes)):
            changed += [
                label for function, code, label in self.functions if function.__code__ is not code
            ]
        for label, caller, implementations in self.hooks:
            now = _implementations(caller)
            if len(now) != len(implementations) or not all(map(operator.is_, now, implementations)):
                changed.append(label)
        return changed


_code = operator.attrgetter("__code__")


def _implementations(caller: Any) -> tuple[object, ...]:
    return tuple(impl.function for impl in caller.get_hookimpls())
