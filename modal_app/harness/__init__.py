"""Test runs: the harness shipped into a sandbox, and the host side that drives it.

Sandbox side (shipped as source, run by ``BOOTSTRAP``; standard library only,
and each other as ``modal_app.harness.<name>``, the names the bootstrap
registers): ``supervisor``, ``proc``, ``build``, and the workers
``harness_python.py``, ``harness_node.js``, ``harness_go.go``.  Host side
(imports ``modal_app.base``, ``paths``, ``logged`` and this package, never a
backend): ``protocol`` (request and result types, the stdin document),
``frames`` (parsing what comes back), ``runner`` (``run_harness``).  This
module holds what both sides agree on (``BOOTSTRAP``, ``FRAME_PREFIX``, file
names) and reads the sources; it never imports the host side.

The runner (``modal_app.harness.runner.run_harness``) starts one command per test run,
``python3 -I -S -c BOOTSTRAP``, as a *private* exec (a read-only snapshot of
the workspace, a fresh home and /tmp, nothing written outlives it), and
writes one JSON document line to its stdin: the supervisor's modules, the
worker sources the language needs, the run's nonce and the *visible* cases'
inputs (arguments or stdin, and timeouts).  The hidden cases follow as a
second line only when the supervisor asks for them, after every visible case
is reported (see ``supervisor``).  Expected
values never enter the sandbox; comparing is the server's job.  Nothing is
written into ``/workspace``: the supervisor keeps its files in a private
temporary directory (the sandbox's own /tmp).

Processes::

    supervisor (supervisor.py + proc.py + build.py, never runs candidate code)
      ├─ compile step, once: ``go build`` with the generated main
      │  (harness_go.go) / TypeScript type check + emit (harness_node.js compile)
      └─ worker: loads the solution once, runs the cases one by one
         (harness_python.py, harness_node.js worker, the Go binary); or, for
         JS/TS/Go programs (stdin -> stdout), one process per case

Each worker gets four fds: stdout and stderr (pipes the supervisor attributes
to the running case, capped), a control pipe it reads cases from, and a
result pipe it writes one JSON message per line to.  The supervisor enforces
every case's timeout: a case that hangs is SIGKILLed with its process group
and reported as TIMEOUT, and a fresh worker loads the solution again for the
remaining cases (likewise after a crash or a memory blow-up).  A worker that
dies on its own is classified from its exit: out-of-memory messages of
Python/Node/Go or an unexplained SIGKILL (cgroup OOM killer) are
MEMORY_LIMIT, anything else RUNTIME_ERROR with the summary line of its stderr.

Framing and why candidate output cannot forge results:

* Results reach the server only as lines ``<<ILM:{nonce}>>{json}`` on the
  supervisor's own stdout.  The nonce is 128 random bits per run, sent in the
  stdin document (never in argv, environment or files); the runner ignores
  every other line and accepts one outcome per requested case index.
* Candidate code never shares that stdout: workers and programs get their own
  pipes (``posix_spawn``; every other supervisor fd is close-on-exec, and the
  workers mark their two protocol pipes close-on-exec for the candidate's
  own subprocesses).  The supervisor makes itself non-dumpable
  (``prctl(PR_SET_DUMPABLE, 0)``), so a same-uid process cannot open
  ``/proc/<supervisor>/fd/1`` or read its memory for the nonce.
* Printing something that looks like a result (framed or worker-protocol
  JSON) lands in the case's captured stdout, and nothing else.  Candidate
  code in a worker process could write to the worker's result pipe, but only
  as its own case's result (the supervisor takes the first message for the
  case it asked for) -- no more than returning that value.

Durations: a worker measures the call itself (the supervisor bounds it by
what it saw); a program's duration is its process's wall time, start-up
included.  A case's timeout includes everything from sending it.

Entry points.  Python: a top-level function of the module (imported once,
``__name__`` is not ``"__main__"``).  JavaScript/TypeScript: the solution runs
as a CommonJS function body with a trailer capturing the top-level binding
of that name, so exporting is optional (``module.exports``/``exports``/
``export``/``export default`` are looked at next); ES module syntax in a .js
function solution is transpiled to CommonJS with the TypeScript compiler.
JavaScript *programs* run as they are with ``node`` (which detects module
syntax); their syntax is checked by ``node --check`` and, for module syntax,
by the compiler's syntactic diagnostics.  Go: ``package main`` without
``main``; the generated main decodes each argument into the parameter's type.

TypeScript: a type error is a COMPILE_ERROR, as in Go.  The solution is
compiled once with the TypeScript compiler API (``typescript`` package, no
``tsc`` process): ``strict`` off (implicit any and loose null checks are
allowed), target ES2022, CommonJS, ``moduleDetection: force`` (a solution
without imports is still a module, so its names do not clash with globals),
``lib: es2022``, source maps (stack traces show .ts lines).  Node's types:
``@types/node`` when it sits next to the compiler *and* the solution uses
Node (``require``, ``process``, imports, ...; loading it costs about a
second), else a declaration shim: the Node globals and built-in modules
(``fs``, ``readline``, ...) typed ``any``.  Every error diagnostic fails the
run with the formatted diagnostics as ``compile_error``.  The compiler is
found at ``$INTERVIEWLM_TYPESCRIPT``, ``$NODE_PATH/typescript``,
``/opt/interviewlm/toolchain/node_modules/typescript`` (the local backend's
toolchain mount), the global ``node_modules`` (Modal images), or next to
``tsc`` on ``PATH``.
"""

from __future__ import annotations

import base64
import marshal
import sys
from functools import cache
from importlib import resources

SUPERVISOR_MODULES = ("proc", "build", "supervisor")
"""The supervisor's modules, in import order (standard library only)."""
PYTHON_WORKER = "harness_python.py"
NODE_WORKER = "harness_node.js"
GO_MAIN = "harness_go.go"
FRAME_PREFIX = "<<ILM:"
"""Frames are ``FRAME_PREFIX + nonce + ">>" + json``, one per line."""

BOOTSTRAP = (
    "import os,sys,ctypes\n"
    # PR_SET_DUMPABLE 0, before any worker runs; the supervisor repeats it and
    # reports a failure on its stderr.
    "try:ctypes.CDLL(None).prctl(4,0,0,0,0)\n"
    "except Exception:pass\n"
    "worker=None\n"
    "if len(sys.argv)>1:\n"  # a Python worker's source and config: start it right away
    " env={k:v for k,v in os.environ.items() if k!='PYTHONUNBUFFERED'}\n"
    " stdout=os.pipe();stderr=os.pipe();control=os.pipe();results=os.pipe()\n"
    " devnull=os.open(os.devnull,os.O_RDONLY)\n"
    " os.set_inheritable(control[0],True);os.set_inheritable(results[1],True)\n"
    " argv=[sys.executable,'-c',*sys.argv[1:]]\n"
    " dup2=os.POSIX_SPAWN_DUP2\n"
    " pid=os.posix_spawn(argv[0],argv+[str(control[0]),str(results[1])],env,"
    "file_actions=[(dup2,devnull,0),(dup2,stdout[1],1),(dup2,stderr[1],2)],setsid=True)\n"
    " for fd in(stdout[1],stderr[1],control[0],results[1],devnull):os.close(fd)\n"
    " worker=[argv,pid,stdout[0],stderr[0],control[1],results[0]]\n"
    "import json,types\n"
    "document=json.loads(sys.stdin.buffer.readline())\n"
    "document['prespawned']=worker\n"
    "compiled=document.pop('compiled')\n"
    "use_compiled=compiled['tag']==sys.implementation.cache_tag\n"
    "if use_compiled:import binascii,marshal\n"
    "for i,(name,source) in enumerate(document.pop('modules')):\n"
    " module=types.ModuleType(name);sys.modules[name]=module\n"
    " exec(marshal.loads(binascii.a2b_base64(compiled['code'][i]))if use_compiled else "
    "compile(source,name.replace('.','/')+'.py','exec'),module.__dict__)\n"
    "module.main(document)\n"
)
"""The ``python3 -I -S -c`` program.  It makes the process non-dumpable, starts
the Python worker given in its arguments at once (the worker's interpreter
start-up then overlaps the supervisor's; ``proc.spawn`` does the same), reads
the stdin document, registers the supervisor modules under their package
names (so their imports of each other resolve) and runs the last.  The
modules come as source and as code compiled by the server's interpreter,
used when the sandbox's has the same bytecode (``cache_tag``): compiling
them costs more than the rest of the supervisor's start-up."""


@cache
def source(name: str) -> str:
    """The text of one harness file of this package."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def supervisor_modules() -> list[tuple[str, str]]:
    """(module name, source) of the supervisor, in the order the bootstrap loads them."""
    return [(f"{__name__}.{name}", source(f"{name}.py")) for name in SUPERVISOR_MODULES]


@cache
def compiled_modules() -> dict[str, str | list[str]]:
    """The supervisor modules compiled by this interpreter (for BOOTSTRAP, see there)."""
    code = [
        compile(text, name.replace(".", "/") + ".py", "exec", dont_inherit=True, optimize=0)
        for name, text in supervisor_modules()
    ]
    return {
        "tag": sys.implementation.cache_tag or "",
        "code": [base64.b64encode(marshal.dumps(c)).decode("ascii") for c in code],
    }


__all__ = [
    "BOOTSTRAP",
    "FRAME_PREFIX",
    "GO_MAIN",
    "NODE_WORKER",
    "PYTHON_WORKER",
    "SUPERVISOR_MODULES",
    "compiled_modules",
    "source",
    "supervisor_modules",
]
