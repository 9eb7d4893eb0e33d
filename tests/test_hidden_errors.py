"""Issue 9: what a test run says about itself carries no hidden input and no internals.

Real components (in-process app, real local sandbox, real database).  The
hidden case of ``tests.test_hidden_leaks.hidden_session`` (visible, hidden,
visible) does something that stops or trips the harness, with its input in
every text it can reach; the candidate's view of the run (``error`` of the
run and of every case, the recording) must hold neither the input nor an
exception's text.
"""

from __future__ import annotations

import json
import secrets

import pytest

from resolvers.testruns import ERROR_HARNESS, run_error, sandbox_error
from tests.conftest import Account
from tests.support import Api
from tests.test_hidden_leaks import hidden_session, leaked, run_and_wait
from tests.workspace_support import EVENTS, START, WRITE

KILLS_THE_HARNESS = """
import os, signal, sys

def probe(s):
    if s.startswith("HIDDEN"):
        for target in ("/proc/1/fd/2", "/proc/1/fd/1", "/proc/self/fd/2"):
            try:
                with open(target, "w") as fh:
                    fh.write("tail:" + s + "\\n")
            except OSError:
                pass
        print("out:" + s, file=sys.stderr, flush=True)
        os.kill(os.getppid(), signal.SIGKILL)
    return s
"""

TRIPS_THE_HARNESS = """
def probe(s):
    if s.startswith("HIDDEN"):
        # A lone surrogate, placed by the input: the harness once crashed on it
        # and its error named the position.
        return "x" * (len(s) * 7) + "\\ud800"
    return s
"""


async def attack(api: Api, account: Account, source: str) -> tuple[str, dict[str, object], str]:
    secret = f"HIDDEN{secrets.token_hex(8)}"
    made = await hidden_session(api, account, secret)
    session, token = made["session"], made["candidate"]
    (await api(START, {"s": session}, token=token)).ok()
    (await api(WRITE, {"s": session, "p": "solution.py", "c": source}, token=token)).ok()
    run = await run_and_wait(api, session, "PYTHON", token)
    recording = (await api(EVENTS, {"s": session, "a": 0}, token=token)).ok()
    return secret, run, json.dumps([run, recording])


async def test_a_hidden_case_that_kills_the_harness(api: Api, account: Account) -> None:
    secret, run, seen = await attack(api, account, KILLS_THE_HARNESS)
    assert run["status"] == "FINISHED"
    assert run["error"] == ERROR_HARNESS
    assert leaked(seen, secret) == []
    assert "exit status" not in seen
    results = run["results"]
    assert isinstance(results, list)
    assert [r["passed"] for r in results] == [False, False, False]  # expected 0 everywhere
    for row in results:
        assert "harness stopped unexpectedly (" not in json.dumps(row)


async def test_a_hidden_result_that_once_crashed_the_harness(api: Api, account: Account) -> None:
    secret, run, seen = await attack(api, account, TRIPS_THE_HARNESS)
    assert run["status"] == "FINISHED"
    assert run["error"] is None
    assert "UnicodeEncodeError" not in seen
    assert "position" not in seen
    assert leaked(seen, secret) == []


@pytest.mark.parametrize(
    ("error", "shown"),
    [
        ("SandboxTerminated", "the sandbox has ended; start it again to run the tests"),
        ("SandboxError", "the sandbox could not run the tests; please try again"),
    ],
)
def test_sandbox_failures_are_told_without_internals(error: str, shown: str) -> None:
    import modal_app.base as base

    exc = getattr(base, error)("/srv/sandboxes/abc123/workspace: internal detail")
    assert sandbox_error(exc) == shown


def test_a_run_without_a_harness_error_has_no_error() -> None:
    from modal_app.harness.protocol import HarnessRun

    assert run_error(HarnessRun(compile_error=None, outcomes=[])) is None
    stopped = HarnessRun(compile_error=None, outcomes=[], harness_error="stderr: secret")
    assert run_error(stopped) == ERROR_HARNESS
