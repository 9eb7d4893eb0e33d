"""The in-sandbox supervisor of one test run (standard library only).

Started by ``modal_app.harness.runner`` as ``python3 -I -S -c BOOTSTRAP``; the
bootstrap reads one JSON document from stdin (this package's supervisor
modules, the worker sources and the run's configuration with the case
inputs), registers the modules and calls :func:`main`.  Nothing is written
into ``/workspace``.

The supervisor never runs candidate code itself.  It compiles once
(``build``), runs the cases in a long-lived worker (``harness_python.py``,
``harness_node.js``, the Go main generated from ``harness_go.go``) or, for
JavaScript/TypeScript/Go programs, one process per case, enforces each case's
timeout, and writes one frame per event to its own stdout.  See
``modal_app.harness`` for the framing and isolation design.

Hidden cases are not in the document: once every visible case is reported,
the supervisor asks for them (a ``hidden`` frame) and reads them as a second
line of stdin.  So while a visible case runs, no hidden input is anywhere in
the sandbox, and after the first hidden input arrives nothing visible is
produced any more.
"""

from __future__ import annotations

import ctypes
import json
import os
import signal
import time

from modal_app.harness.build import Builder
from modal_app.harness.proc import Child, Frames, Message, death, ms_since, stdin_file

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from typing import Any

PR_SET_DUMPABLE = 4


def main(document: dict[str, Any]) -> None:
    """Run the test run described by ``document`` (see ``modal_app.harness.runner``)."""
    _make_private()
    frames = Frames(str(document["nonce"]))
    started = time.monotonic()
    tmp = _private_dir()
    try:
        compile_ms = Run(document, frames, tmp).execute()
        frames.emit({"t": "done", "compile_ms": compile_ms, "total_ms": ms_since(started)})
    except Exception as exc:  # a harness bug: tell the runner rather than go quiet
        frames.emit({"t": "harness_error", "message": f"{type(exc).__name__}: {exc}"})
        raise
    finally:
        import shutil  # after the results: it costs a millisecond to import

        shutil.rmtree(tmp, ignore_errors=True)


def _make_private() -> None:
    """Make this process non-dumpable: same-uid processes cannot open /proc/<pid>/fd/*.

    Workers run candidate code as the same uid; without this they could open
    the supervisor's stdout through /proc and write frames into it, or read
    the nonce from its memory.  execve resets the flag, so the workers
    themselves are ordinary processes.
    """
    # The bootstrap made the process non-dumpable already; this repeats it for
    # a supervisor started some other way.  No logging module in here (it
    # costs milliseconds): a failure goes to our stderr, which the server
    # keeps only for the log of a harness that died.
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    except Exception as exc:
        os.write(2, f"harness: prctl(PR_SET_DUMPABLE) failed: {exc!r}\n".encode())


def _private_dir() -> str:
    """A fresh 0700 directory under $TMPDIR (``tempfile`` costs milliseconds to import)."""
    base = os.environ.get("TMPDIR") or "/tmp"  # noqa: S108 - the sandbox's private tmpfs
    path = os.path.join(base, f"ilm-harness-{os.urandom(8).hex()}")
    os.mkdir(path, 0o700)
    return path


class LoadFailure:
    """Why a worker could not load the solution: a compile error, or every case's outcome."""

    def __init__(self, compile_error: str | None = None, fields: Message | None = None) -> None:
        self.compile_error = compile_error
        self.fields = fields or {}


class Run:
    """One test run: compile or load once, then every case in order."""

    def __init__(self, document: dict[str, Any], frames: Frames, tmp: str) -> None:
        self.doc = document
        self.frames = frames
        self.mode: str = document["mode"]
        self.cases: list[Message] = list(document["cases"])
        self.caps: dict[str, int] = document["caps"]
        env = dict(os.environ)
        for name, source in document["files"].items():
            with open(os.path.join(tmp, name), "w", encoding="utf-8") as fh:
                fh.write(source)
        self.builder = Builder(document, env=env, tmp=tmp)
        self.deadline = self.builder.deadline
        # Workers flush per line themselves; unbuffered would cost a write per print.
        self.worker_env = {k: v for k, v in env.items() if k != "PYTHONUNBUFFERED"}
        self.prespawned: list[Any] | None = document.get("prespawned")
        self.worker: Child | None = None
        """The case-loop worker, kept from the visible cases to the hidden ones."""
        self.failure: LoadFailure | None = None
        self.reported = False
        """A case was reported: a compile error can no longer be."""
        self.stopped = False
        """A compile error was reported: nothing more runs."""

    def execute(self) -> int:
        """Compile, run the visible cases, then the hidden ones; return the compile time in ms."""
        started = time.monotonic()
        plan = self.builder.prepare()
        compile_ms = ms_since(started)
        if plan.compile_error is not None:
            self.compile_error(plan.compile_error)
        elif self.doc.get("phase") == "build":
            self.emit_artifact(plan)
        else:
            try:
                self.run_cases(plan)
                if int(self.doc.get("hidden_count") or 0) > 0 and not self.stopped:
                    self.cases = self.hidden_cases()
                    self.run_cases(plan)
            finally:
                if self.worker is not None:
                    self.worker.close()
                    self.worker = None
        if self.prespawned is not None:  # not adopted: nothing ran in a worker
            self.adopt([])
        return compile_ms

    def emit_artifact(self, plan: Any) -> None:
        """Build only (Go): the binary and the paths to rewrite, for the run that follows."""
        import base64

        with open(plan.argv[0], "rb") as fh:
            binary = base64.b64encode(fh.read()).decode("ascii")
        self.frames.emit({"t": "artifact", "binary": binary, "rewrites": self.builder.rewrites})

    def run_cases(self, plan: Any) -> None:
        if plan.loop:
            self.run_loop(plan.argv)
        else:
            self.run_each(plan.argv)

    def hidden_cases(self) -> list[Message]:
        """Ask the runner for the hidden cases and read them (one JSON line on stdin)."""
        import sys

        self.frames.emit({"t": "hidden"})
        line = sys.stdin.buffer.readline()
        cases = json.loads(line) if line.strip() else []
        return list(cases)

    # -- reporting -----------------------------------------------------------------

    def compile_error(self, message: str) -> None:
        self.frames.emit({"t": "compile_error", "message": message[: self.caps["compile"]]})

    def emit_case(self, case: Message, status: str, **fields: Any) -> None:
        frame: Message = {
            "t": "case",
            "index": case["index"],
            "status": status,
            "value": None,
            "stdout": "",
            "stderr": "",
            "error": None,
            "traceback": None,
            "signal": None,
            "duration_ms": 0,
        }
        frame.update(fields)
        for key in ("stdout", "stderr", "error", "traceback"):
            text = frame[key]
            if isinstance(text, str):
                for private, shown in self.builder.rewrites:
                    text = text.replace(private, shown)
                frame[key] = text
        self.frames.emit(frame)

    def out_of_budget(self, case: Message) -> bool:
        if time.monotonic() < self.deadline:
            return False
        self.emit_case(case, "TIMEOUT", error="not run: the test run's time limit was reached")
        return True

    def timeout_error(self, case: Message, started: float) -> str:
        if started + case["timeout_ms"] / 1000 > self.deadline:
            return "the test run's time limit was reached"
        return f"timed out after {case['timeout_ms']} ms"

    def spawn(self, argv: list[str], *, channel: bool, stdin: int | None) -> Child:
        return Child(
            argv,
            env=self.worker_env,
            stdin=stdin,
            out_cap=self.caps["stdout"],
            err_cap=self.caps["stderr"],
            channel=channel,
        )

    # -- a long-lived worker -------------------------------------------------------

    def run_loop(self, argv: list[str]) -> None:
        """Cases one after another in a worker, replaced after a hang, crash or memory error."""
        for case in self.cases:
            if self.out_of_budget(case):
                self.reported = True
                continue
            if self.worker is None and self.failure is None:
                self.worker, self.failure = self.start_worker(argv)
            failure = self.failure
            if failure is not None and failure.compile_error is not None:
                if not self.reported:
                    self.compile_error(failure.compile_error)
                    self.stopped = True
                    return
                # The file changed under a later worker: no compile error
                # after results, the remaining cases fail instead.
                error = f"while loading the solution again: {failure.compile_error}"
                self.failure = LoadFailure(fields={"status": "RUNTIME_ERROR", "error": error})
            if self.failure is not None:
                self.emit_case(case, **self.failure.fields)
                self.reported = True
                continue
            assert self.worker is not None
            self.reported = True
            if self.run_in_worker(self.worker, case):
                self.worker.close()
                self.worker = None

    def start_worker(self, argv: list[str]) -> tuple[Child | None, LoadFailure | None]:
        """A worker that has loaded the solution, or why every remaining case fails."""
        worker = self.adopt(argv) or self.spawn(argv, channel=True, stdin=None)
        limit = max(0.0, min(float(self.doc["load_timeout_s"]), self.deadline - time.monotonic()))
        deadline = time.monotonic() + limit
        fields: Message
        while (message := worker.next_message(deadline)) is not None:
            if message.get("t") == "ready":
                return worker, None
            if message.get("t") == "load_error":
                worker.kill()
                error = _text(message.get("error")) or "the solution could not be loaded"
                if message.get("kind") == "compile":
                    return None, LoadFailure(compile_error=error)
                fields = {
                    "status": "MEMORY_LIMIT" if message.get("memory") is True else "RUNTIME_ERROR",
                    "error": f"while loading the solution: {error}",
                    "traceback": _text(message.get("traceback")),
                }
                return None, LoadFailure(fields=fields | self.output(worker))
        if worker.exited:
            status, error, sig = death(worker)
            fields = {"status": status, "error": f"while loading the solution: {error}"}
            fields |= {"signal": sig} | self.output(worker)
        else:
            error = f"the solution did not finish loading within {limit:.1f} s"
            fields = {"status": "TIMEOUT", "error": error}
        worker.kill()
        return None, LoadFailure(fields=fields)

    def adopt(self, argv: list[str]) -> Child | None:
        """The worker the bootstrap started, if it is the one wanted (see BOOTSTRAP)."""
        prespawned, self.prespawned = self.prespawned, None
        if prespawned is None:
            return None
        started = (prespawned[1], prespawned[2], prespawned[3], prespawned[4], prespawned[5])
        child = Child(
            argv,
            env=self.worker_env,
            stdin=None,
            out_cap=self.caps["stdout"],
            err_cap=self.caps["stderr"],
            channel=True,
            started=started,
        )
        if prespawned[0] == argv:
            return child
        child.kill()
        return None

    @staticmethod
    def output(child: Child) -> Message:
        return {"stdout": child.out.text(), "stderr": child.err.text()}

    def run_in_worker(self, worker: Child, case: Message) -> bool:
        """Run one case; True if the worker must be replaced."""
        index = case["index"]
        request: Message = {"i": index}
        if self.mode == "function":
            request["args"] = case["args"]
        else:
            request["stdin"] = case["stdin"]
        started = time.monotonic()
        deadline = min(started + case["timeout_ms"] / 1000, self.deadline)
        worker.send(request)
        while (message := worker.next_message(deadline)) is not None:
            if message.get("t") == "result" and message.get("i") == index:
                break
        elapsed = ms_since(started)
        if message is not None:
            worker.drain()
            replace = self.emit_result(case, message, worker, elapsed)
            worker.out.reset()
            worker.err.reset()
            return replace
        if worker.exited:
            status, error, sig = death(worker)
            fields = {"error": error, "signal": sig, "duration_ms": elapsed}
            self.emit_case(case, status, **fields, **self.output(worker))
            return True
        worker.kill()
        error = self.timeout_error(case, started)
        fields = {"error": error, "signal": signal.SIGKILL, "duration_ms": elapsed}
        self.emit_case(case, "TIMEOUT", **fields, **self.output(worker))
        return True

    def emit_result(self, case: Message, message: Message, worker: Child, elapsed: int) -> bool:
        """Report a worker's result message; True if the worker must be replaced."""
        reported = message.get("ms")
        duration = elapsed
        if isinstance(reported, int | float) and 0 <= reported <= elapsed:
            duration = round(reported)
        fields: Message = {"duration_ms": duration, **self.output(worker)}
        if message.get("ok") is True:
            if self.mode != "function":
                self.emit_case(case, "OK", **fields)
                return False
            value = _text(message.get("value")) or "null"
            # surrogatepass: a lone surrogate in a string must not crash the supervisor.
            if len(value.encode("utf-8", "surrogatepass")) > self.caps["value"]:
                error = f"the return value is larger than {self.caps['value']} bytes of JSON"
                self.emit_case(case, "RUNTIME_ERROR", error=error, **fields)
                return False
            self.emit_case(case, "OK", value=value, **fields)
            return False
        memory = message.get("memory") is True
        self.emit_case(
            case,
            "MEMORY_LIMIT" if memory else "RUNTIME_ERROR",
            error=_text(message.get("error")) or "error",
            traceback=_text(message.get("traceback")),
            **fields,
        )
        return memory

    # -- one process per case ------------------------------------------------------

    def run_each(self, argv: list[str]) -> None:
        """Programs: one process per case, stdin from an in-memory file."""
        for case in self.cases:
            if self.out_of_budget(case):
                continue
            stdin = stdin_file(case["stdin"] or "")
            try:
                child = self.spawn(argv, channel=False, stdin=stdin)
            finally:
                os.close(stdin)
            try:
                self.run_program(child, case)
            finally:
                child.close()

    def run_program(self, child: Child, case: Message) -> None:
        started = time.monotonic()
        finished = child.wait_exit(min(started + case["timeout_ms"] / 1000, self.deadline))
        elapsed = ms_since(started)
        if not finished:
            child.kill()
            error = self.timeout_error(case, started)
            fields = {"error": error, "signal": signal.SIGKILL, "duration_ms": elapsed}
            self.emit_case(case, "TIMEOUT", **fields, **self.output(child))
            return
        child.drain()
        if child.returncode == 0:
            self.emit_case(case, "OK", duration_ms=elapsed, **self.output(child))
            return
        status, error, sig = death(child)
        fields = {"error": error, "signal": sig, "duration_ms": elapsed}
        self.emit_case(case, status, **fields, **self.output(child))


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
