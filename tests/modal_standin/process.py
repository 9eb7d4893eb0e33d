"""The stand-in in its own process, for tests whose clients are other processes (API replicas).

``with standin_process() as env:`` starts ``python -m tests.modal_standin``,
waits for its ``export`` lines and yields them as a dict (``MODAL_SERVER_URL``,
``MODAL_TOKEN_ID``, ``MODAL_TOKEN_SECRET``) to put into each client's
environment; on exit it is stopped with SIGTERM (it then kills its sandboxes
and removes its root).
"""

from __future__ import annotations

import contextlib
import os
import select
import shlex
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

_REPO = Path(__file__).resolve().parents[2]
_KEYS = {"MODAL_SERVER_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"}


@contextlib.contextmanager
def standin_process(timeout_s: float = 30.0) -> Iterator[dict[str, str]]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.modal_standin"],
        cwd=_REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(_REPO)},
    )
    try:
        yield _read_env(proc, timeout_s)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdout, proc.stderr):
            if pipe is not None:
                pipe.close()


def _read_env(proc: subprocess.Popen[bytes], timeout_s: float) -> dict[str, str]:
    assert proc.stdout is not None
    env: dict[str, str] = {}
    deadline = time.monotonic() + timeout_s
    buffered = b""
    while set(env) != _KEYS:
        remaining = deadline - time.monotonic()
        if remaining <= 0 or proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr and proc.poll() is not None else b""
            raise RuntimeError(f"the Modal stand-in did not start: {err.decode(errors='replace')}")
        ready, _, _ = select.select([proc.stdout], [], [], remaining)
        if not ready:
            continue
        chunk = os.read(proc.stdout.fileno(), 4096)
        buffered += chunk
        *lines, buffered = buffered.split(b"\n")
        for line in lines:
            words = shlex.split(line.decode())
            if words[:1] == ["export"] and "=" in words[1]:
                key, _, value = words[1].partition("=")
                env[key] = value
    return env
