"""Python worker of the test harness (standard library only; runs inside the sandbox).

``python3 -c SOURCE CONFIG_JSON CTL_FD RES_FD``: loads the solution
once, then reads one case per line from CTL_FD and writes one JSON message
per line to RES_FD (see ``modal_app.harness``).  stdout and stderr are pipes
the supervisor attributes to the running case; the candidate's code writes
there, never to RES_FD (which it could only reach by guessing the protocol,
and the supervisor accepts one result per case, for the case it asked for).

Function mode: the solution is imported once as a module named after its
file (``__name__`` is not ``"__main__"``, so a ``if __name__ == "__main__":``
block does not run) and ``entry(*args)`` is called per case; a coroutine is
awaited.  Program mode: the compiled solution runs as ``__main__`` with fresh
globals per case, stdin (fd 0, ``sys.stdin``, ``input()``, ``open(0)``) being
the case's input.
"""

from __future__ import annotations

import builtins
import contextlib
import io
import json
import os
import sys
import time
import traceback
import types

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, BinaryIO


def main() -> None:
    config = json.loads(sys.argv[1])
    ctl, res = int(sys.argv[2]), int(sys.argv[3])
    for fd in (ctl, res):
        os.set_inheritable(fd, False)  # not for the candidate's subprocesses
    _prefer_as_oom_victim()
    solution: str = config["solution"]
    # Line-buffered: what a case printed before it hung or crashed is kept.
    for stream in (sys.stdout, sys.stderr):
        if isinstance(stream, io.TextIOWrapper):
            stream.reconfigure(line_buffering=True)
    sys.argv = [solution]
    sys.path[0] = os.path.dirname(solution)
    worker = Worker(solution, config["entry"], config["mode"], os.fdopen(res, "wb"))
    if worker.load():
        with os.fdopen(ctl, "rb") as cases:
            for line in cases:
                worker.run(json.loads(line))


_HERE = main.__code__.co_filename
"""This file's name in tracebacks ("<string>" when run with ``python3 -c``)."""


def _prefer_as_oom_victim() -> None:
    try:
        with open("/proc/self/oom_score_adj", "w") as fh:
            fh.write("1000")
    except OSError:
        pass


class Worker:
    def __init__(self, solution: str, entry: str, mode: str, results: BinaryIO) -> None:
        self.solution = solution
        self.entry = entry
        self.mode = mode
        self.results = results
        self.code: types.CodeType | None = None
        self.function: Callable[..., Any] | None = None
        self.streams = (sys.stdin, sys.stdout, sys.stderr)

    def send(self, message: dict[str, Any]) -> None:
        self.results.write(json.dumps(message).encode() + b"\n")
        self.results.flush()

    def load(self) -> bool:
        try:
            with open(self.solution, "rb") as fh:
                source = fh.read()
        except OSError as exc:
            return self._load_error("compile", f"cannot read {self.solution}: {exc.strerror}")
        try:
            self.code = compile(source, self.solution, "exec", dont_inherit=True)
        except (SyntaxError, ValueError) as exc:
            text = "".join(traceback.format_exception_only(type(exc), exc)).rstrip()
            return self._load_error("compile", text)
        if self.mode == "function":
            name = os.path.splitext(os.path.basename(self.solution))[0] or "solution"
            module = types.ModuleType(name)
            module.__file__ = self.solution
            sys.modules[name] = module
            try:
                exec(self.code, module.__dict__)  # noqa: S102 - the candidate's solution
            except BaseException as exc:
                error, trace = _describe(exc)
                return self._load_error("runtime", error, trace, isinstance(exc, MemoryError))
            finally:
                self._flush()
                self._restore()
            function = module.__dict__.get(self.entry)
            if not callable(function):
                return self._load_error(
                    "compile",
                    f"{os.path.basename(self.solution)}: no top-level function named"
                    f" {self.entry!r}",
                )
            self.function = function
        self.send({"t": "ready"})
        return True

    def _load_error(
        self, kind: str, error: str, trace: str | None = None, memory: bool = False
    ) -> bool:
        self.send(
            {"t": "load_error", "kind": kind, "error": error, "traceback": trace, "memory": memory}
        )
        return False

    def run(self, case: dict[str, Any]) -> None:
        index = case["i"]
        if self.mode == "function":
            message = self._call(case["args"])
        else:
            message = self._program(case["stdin"])
        self._flush()
        self._restore()
        message.update({"t": "result", "i": index})
        self.send(message)

    def _call(self, args: list[Any]) -> dict[str, Any]:
        assert self.function is not None
        started = time.perf_counter()
        try:
            value = self.function(*args)
            if isinstance(value, types.CoroutineType):
                import asyncio

                value = asyncio.run(value)
        except BaseException as exc:
            return _failure(exc, started)
        elapsed = _ms(started)
        try:
            text = json.dumps(
                value, ensure_ascii=False, allow_nan=False, separators=(",", ":"), default=_jsonable
            )
        except (TypeError, ValueError, RecursionError) as exc:
            return {
                "ok": False,
                "error": f"the return value is not JSON-serializable: {exc}",
                "ms": elapsed,
            }
        return {"ok": True, "value": text, "ms": elapsed}

    def _program(self, stdin: str) -> dict[str, Any]:
        assert self.code is not None
        _feed_stdin(stdin.encode("utf-8", "surrogatepass"))
        namespace: dict[str, Any] = {
            "__name__": "__main__",
            "__file__": self.solution,
            "__builtins__": builtins,
            "__doc__": None,
            "__package__": None,
            "__spec__": None,
        }
        started = time.perf_counter()
        try:
            exec(self.code, namespace)  # noqa: S102 - the candidate's program
        except SystemExit as exc:
            code = exc.code
            if code is None or code == 0:
                return {"ok": True, "ms": _ms(started)}
            if not isinstance(code, int):
                print(code, file=sys.stderr)
                code = 1
            return {"ok": False, "error": f"exit status {code}", "ms": _ms(started)}
        except BaseException as exc:
            return _failure(exc, started)
        return {"ok": True, "ms": _ms(started)}

    def _flush(self) -> None:
        for stream in (sys.stdout, sys.stderr, self.streams[1], self.streams[2]):
            with contextlib.suppress(OSError, ValueError, AttributeError):
                stream.flush()

    def _restore(self) -> None:
        sys.stdin, sys.stdout, sys.stderr = self.streams


def _feed_stdin(data: bytes) -> None:
    try:
        fd = os.memfd_create("stdin", 0)
    except (AttributeError, OSError):
        tmp = os.environ.get("TMPDIR") or "/tmp"  # noqa: S108 - the sandbox's private tmpfs
        fd = os.open(tmp, os.O_TMPFILE | os.O_RDWR, 0o600)
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.lseek(fd, 0, os.SEEK_SET)
    os.dup2(fd, 0)
    os.close(fd)
    sys.stdin = io.TextIOWrapper(
        io.BufferedReader(io.FileIO(0, "r", closefd=False)), encoding="utf-8"
    )


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 3)


def _failure(exc: BaseException, started: float) -> dict[str, Any]:
    elapsed = _ms(started)
    error, trace = _describe(exc)
    return {
        "ok": False,
        "error": error,
        "traceback": trace,
        "memory": isinstance(exc, MemoryError),
        "ms": elapsed,
    }


def _describe(exc: BaseException) -> tuple[str, str]:
    """("Type: message", the traceback without this file's frames)."""
    error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_code.co_filename == _HERE:
        tb = tb.tb_next
    trace = "".join(traceback.format_exception(type(exc), exc, tb))
    return error, trace


def _jsonable(value: Any) -> Any:
    """json.dumps fallback: sets become (sorted when possible) lists, iterables lists."""
    if isinstance(value, set | frozenset):
        try:
            return sorted(value)
        except TypeError:
            return list(value)
    if isinstance(value, bytes | bytearray | str):
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable")
    try:
        return list(value)
    except TypeError:
        raise TypeError(f"Object of type {type(value).__name__} is not JSON serializable") from None


if __name__ == "__main__":
    main()
