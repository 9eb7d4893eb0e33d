"""Compile steps of the in-sandbox supervisor: what runs the cases, built once.

Standard library only; shipped into the sandbox with ``supervisor.py``.

* Python: no step; the worker compiles the file when it loads it (a syntax
  error comes back as a compile error).
* JavaScript: functions load in the Node worker (syntax errors likewise);
  programs are checked once with ``node --check``.
* TypeScript: type check and emit once (``harness_node.js compile``); type
  errors are compile errors.
* Go: ``go build`` once, with the generated main for functions (the
  candidate's file is copied into a private build directory next to it).
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time

from modal_app.harness.proc import Child

TYPE_CHECKING = False  # not typing.TYPE_CHECKING: importing typing costs milliseconds
if TYPE_CHECKING:
    from typing import Any

GO_MAIN_FILE = "ilm_harness_main.go"


class Plan:
    """How the cases run: ``argv`` is a case-loop worker (``loop``) or a program."""

    def __init__(
        self, argv: list[str] | None = None, *, loop: bool = True, compile_error: str | None = None
    ) -> None:
        self.argv = argv or []
        self.loop = loop
        self.compile_error = compile_error


class Builder:
    """The compile step of one run (plain classes: dataclasses cost an import of inspect)."""

    def __init__(self, document: dict[str, Any], *, env: dict[str, str], tmp: str) -> None:
        self.language: str = document["language"]
        self.mode: str = document["mode"]
        self.entry: str = document["entrypoint"]
        self.solution: str = document["solution"]
        self.files: dict[str, str] = document["files"]
        self.compile_cap: int = document["caps"]["compile"]
        self.compile_timeout_s = float(document["compile_timeout_s"])
        self.deadline = time.monotonic() + float(document["budget_s"])
        self.doc = document
        self.cwd = os.getcwd()
        self.env = env
        self.tmp = tmp
        self.rewrites: list[tuple[str, str]] = []
        """(private path, the candidate's path) pairs for reported text."""

    def path(self, name: str) -> str:
        return os.path.join(self.tmp, name)

    @property
    def function(self) -> bool:
        return self.mode == "function"

    def prepare(self) -> Plan:
        if self.language == "PYTHON":
            source = self.files["harness_python.py"]
            config = python_worker_config(self.solution, self.entry, self.mode)
            return Plan([sys.executable, "-c", source, config])
        if self.language == "JAVASCRIPT":
            return self.javascript()
        if self.language == "TYPESCRIPT":
            return self.typescript()
        if self.language == "GO":
            return self.go()
        raise ValueError(f"unknown language {self.language!r}")

    def which(self, tool: str) -> str:
        return _which(tool, self.env) or tool

    def node_worker(self, file: str) -> Plan:
        config = {
            "file": file,
            "solution": self.solution,
            "entry": self.entry,
            "cwd": self.cwd,
            "typescript": find_typescript(self.env),
        }
        node = self.which("node")
        return Plan([node, self.path("harness_node.js"), "worker", json.dumps(config)])

    def javascript(self) -> Plan:
        if self.function:
            return self.node_worker(self.solution)
        node = self.which("node")
        ok, output = self.tool([node, "--check", self.solution], "node --check")
        if ok and _looks_like_module(self.solution):
            config = {
                "solution": self.solution,
                "cwd": self.cwd,
                "typescript": find_typescript(self.env),
            }
            argv = [node, self.path("harness_node.js"), "check-module", json.dumps(config)]
            report = self.report(argv, "the JavaScript syntax check")
            ok, output = not isinstance(report, str), str(report)
        return Plan([node, self.solution], loop=False, compile_error=None if ok else output)

    def report(self, argv: list[str], what: str) -> dict[str, Any] | str:
        """The JSON report of a harness_node.js step, or the compile error text."""
        ok, output = self.tool(argv, what)
        if not ok:
            return output
        try:
            report: dict[str, Any] = json.loads(output)
        except ValueError:
            return f"{what} failed: {output[:2000]}"
        if not report.get("ok"):
            return str(report.get("message") or f"{what} failed")
        return report

    def typescript(self) -> Plan:
        typescript = find_typescript(self.env)
        if typescript is None:
            return Plan(
                compile_error="the TypeScript compiler is not installed in this sandbox (looked"
                " in $INTERVIEWLM_TYPESCRIPT, $NODE_PATH, the toolchain mount, the global"
                " node_modules and next to tsc on PATH)"
            )
        types = os.path.join(os.path.dirname(typescript), "@types")
        config = {
            "solution": self.solution,
            "cwd": self.cwd,
            "outDir": self.path("out"),
            "typescript": typescript,
            "typeRoots": types if os.path.isdir(os.path.join(types, "node")) else None,
            "shim": self.path("ilm-node-shim.d.ts"),
        }
        argv = [self.which("node"), self.path("harness_node.js"), "compile", json.dumps(config)]
        report = self.report(argv, "the TypeScript compiler")
        if isinstance(report, str):
            return Plan(compile_error=report)
        compiled = str(report["file"])
        self.rewrites.append((compiled, self.solution))
        if self.function:
            return self.node_worker(compiled)
        return Plan([self.which("node"), "--enable-source-maps", compiled], loop=False)

    def go(self) -> Plan:
        build = self.path("go")
        os.mkdir(build)
        built = self.doc.get("artifact")
        if isinstance(built, dict):
            # Built by an earlier, ordinary command (see modal_app.harness.runner): the
            # build cache is not writable here, and may only be written before
            # any hidden input exists.
            binary = os.path.join(build, "solution.bin")
            with open(binary, "wb") as fh:
                fh.write(base64.b64decode(str(built["binary"])))
            os.chmod(binary, 0o700)
            self.rewrites += [(str(a), str(b)) for a, b in built.get("rewrites", [])]
            return Plan([binary], loop=self.function)
        name = os.path.basename(self.solution)
        if not name.endswith(".go"):
            name += ".go"
        try:
            with open(self.solution, "rb") as src, open(os.path.join(build, name), "wb") as dst:
                dst.write(src.read())
        except OSError as exc:
            return Plan(compile_error=f"cannot read the solution {self.solution}: {exc.strerror}")
        files = [os.path.join(build, name)]
        self.rewrites.append((files[0], self.solution))
        if self.function:
            main = self.files["harness_go.go"].replace("ILM_ENTRYPOINT", self.entry)
            files.append(os.path.join(build, GO_MAIN_FILE))
            with open(files[1], "w", encoding="utf-8") as fh:
                fh.write(main)
        binary = os.path.join(build, "solution.bin")
        # No symbol table or DWARF: a third smaller to ship to the run; panics keep file:line.
        argv = [self.which("go"), "build", "-ldflags=-s -w", "-o", binary, *files]
        ok, output = self.tool(argv, "go build")
        if not ok:
            return Plan(compile_error=self.go_errors(output, files[0]))
        return Plan([binary], loop=self.function)

    def tool(self, argv: list[str], what: str) -> tuple[bool, str]:
        """Run one compiler step: (succeeded, its stdout if so, else all its output)."""
        budget = max(0.0, min(self.compile_timeout_s, self.deadline - time.monotonic()))
        child = Child(
            argv,
            env=self.env,
            stdin=None,
            out_cap=self.compile_cap,
            err_cap=self.compile_cap,
            channel=False,
        )
        try:
            if not child.wait_exit(time.monotonic() + budget):
                child.kill()
                return False, f"{what} did not finish within {budget:.0f} s"
            if child.returncode == 0:
                return True, child.out.text()
            return False, (child.out.text() + child.err.text()).strip() or f"{what} failed"
        finally:
            child.close()

    def go_errors(self, output: str, copy: str) -> str:
        """``go build`` output in terms of the candidate's file, without the generated main."""
        solution, entry = self.solution, self.entry
        inside = solution.startswith(self.cwd + "/")
        shown = os.path.relpath(solution, self.cwd) if inside else solution
        lines = []
        for raw in output.splitlines():
            if raw.startswith("# "):
                continue
            line = raw.replace(f"{copy}:", f"{shown}:")
            if GO_MAIN_FILE in line:
                if f"undefined: {entry}" in line:
                    line = f"{shown}: no top-level function {entry} is defined"
                else:
                    line = line.split(": ", 1)[-1]
            if self.function and "main redeclared" in line:
                line += (
                    "  (function-mode solutions must not define func main: the test harness"
                    " provides it)"
                )
            lines.append(line)
        return "\n".join(lines).strip() or output


def python_worker_config(solution: str, entry: str, mode: str) -> str:
    """The Python worker's config argument (the runner passes the same to the bootstrap)."""
    return json.dumps({"solution": solution, "entry": entry, "mode": mode})


_MODULE_SYNTAX = re.compile(r"^\s*(import|export)\b", re.MULTILINE)


def _looks_like_module(path: str) -> bool:
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            return bool(_MODULE_SYNTAX.search(fh.read()))
    except OSError:
        return False


def _which(tool: str, env: dict[str, str]) -> str | None:
    """``shutil.which`` on the sandbox's PATH (shutil costs a millisecond to import)."""
    for directory in env.get("PATH", os.defpath).split(":"):
        path = os.path.join(directory or ".", tool)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return path
    return None


def find_typescript(env: dict[str, str]) -> str | None:
    """The directory of the ``typescript`` package the sandbox can see, if any."""
    candidates: list[str] = []
    if env.get("INTERVIEWLM_TYPESCRIPT"):
        candidates.append(env["INTERVIEWLM_TYPESCRIPT"])
    candidates += [os.path.join(p, "typescript") for p in env.get("NODE_PATH", "").split(":") if p]
    candidates += [
        "/opt/interviewlm/toolchain/node_modules/typescript",
        "/usr/local/lib/node_modules/typescript",
        "/usr/lib/node_modules/typescript",
    ]
    tsc = _which("tsc", env)
    if tsc:
        candidates.append(os.path.dirname(os.path.dirname(os.path.realpath(tsc))))
    for candidate in candidates:
        if os.path.isfile(os.path.join(candidate, "lib", "typescript.js")):
            return candidate
    return None
