"""Issue 9 §2: hidden test inputs never reach the candidate, in any language, by any channel.

Real components: the in-process app with the real local bubblewrap sandbox and
the real database.  Each attack solution, on every call, appends its input to
a file in the workspace, the home directory and /tmp, keeps it in memory,
prints everything it has collected to stdout and stderr, returns it (a
visible case's return value is shown to the candidate), and raises with its
input when the input is the hidden one.  The question's cases are ordered
visible, hidden, visible, so a worker reused across cases would print the
hidden input during the last visible case.  The candidate then runs the tests
again (a file left behind would be printed by a visible case of that run),
runs a command, and reads testRun, recording, files and file: the hidden input
must appear nowhere.  The interviewer's view shows it (staff are trusted),
which proves the attack really ran.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from typing import Any

import httpx
import pytest

from tests.conftest import Account, random_email
from tests.server import ServerProcess
from tests.support import Api, wait_until
from tests.workspace_support import EVENTS, FILE, FILES, RUN, START, WRITE
from tests.wsclient import GraphQLWS

CREATE_QUESTION = "mutation($input: CreateQuestionInput!) { createQuestion(input: $input) { id } }"
CREATE_SESSION = """mutation($input: CreateSessionInput!) {
  createSession(input: $input) { session { id } candidateToken } }"""
RUN_TESTS = "mutation($s: ID!, $l: Language) { runTests(sessionId: $s, language: $l) { id } }"
TEST_RUN = """query($id: ID!) { testRun(id: $id) {
  id status total passed failed compileError error
  results { index hidden passed name verdict durationMs actual output error signal }
} }"""

PATHS = {
    "PYTHON": "solution.py",
    "JAVASCRIPT": "solution.js",
    "TYPESCRIPT": "solution.ts",
    "GO": "solution.go",
}
ENTRY = {"PYTHON": "probe", "JAVASCRIPT": "probe", "TYPESCRIPT": "probe", "GO": "Probe"}

ATTACKS = {
    "PYTHON": """
import os, sys
_stash = []
FILES = {"ws:": "/workspace/leak.txt", "home:": os.path.expanduser("~/leak.txt"),
         "tmp:": "/tmp/leak.txt"}

def probe(s):
    _stash.append("mem:" + s)
    for tag, path in FILES.items():
        try:
            with open(path, "a") as fh:
                fh.write(tag + s + "\\n")
        except OSError:
            pass
    seen = list(_stash)
    for path in FILES.values():
        try:
            with open(path) as fh:
                seen.append(fh.read())
        except OSError:
            pass
    text = "|".join(seen)
    print(text, "out:" + s)
    print(text, "err:" + s, file=sys.stderr)
    if s.startswith("HIDDEN"):
        raise ValueError("raise:" + s)
    return text
""",
    "JAVASCRIPT": """
const fs = require("fs");
const os = require("os");
const stash = [];
const FILES = {"ws:": "/workspace/leak.txt", "home:": os.homedir() + "/leak.txt",
               "tmp:": "/tmp/leak.txt"};
function probe(s) {
  stash.push("mem:" + s);
  for (const [tag, p] of Object.entries(FILES)) {
    try { fs.appendFileSync(p, tag + s + "\\n"); } catch (e) {}
  }
  const seen = stash.slice();
  for (const p of Object.values(FILES)) {
    try { seen.push(fs.readFileSync(p, "utf8")); } catch (e) {}
  }
  const text = seen.join("|");
  console.log(text, "out:" + s);
  console.error(text, "err:" + s);
  if (s.startsWith("HIDDEN")) throw new Error("raise:" + s);
  return text;
}
""",
    "TYPESCRIPT": """
import * as fs from "fs";
import * as os from "os";
const stash: string[] = [];
const FILES: Record<string, string> = {"ws:": "/workspace/leak.txt",
  "home:": os.homedir() + "/leak.txt", "tmp:": "/tmp/leak.txt"};
function probe(s: string): string {
  stash.push("mem:" + s);
  for (const [tag, p] of Object.entries(FILES)) {
    try { fs.appendFileSync(p, tag + s + "\\n"); } catch (e) {}
  }
  const seen = stash.slice();
  for (const p of Object.values(FILES)) {
    try { seen.push(fs.readFileSync(p, "utf8")); } catch (e) {}
  }
  const text = seen.join("|");
  console.log(text, "out:" + s);
  console.error(text, "err:" + s);
  if (s.startsWith("HIDDEN")) throw new Error("raise:" + s);
  return text;
}
""",
    "GO": """package main

import (
\t"fmt"
\t"os"
\t"strings"
)

var stash []string

func files() [][2]string {
\thome, _ := os.UserHomeDir()
\treturn [][2]string{{"ws:", "/workspace/leak.txt"}, {"home:", home + "/leak.txt"},
\t\t{"tmp:", "/tmp/leak.txt"}}
}

func Probe(s string) string {
\tstash = append(stash, "mem:"+s)
\tfor _, f := range files() {
\t\tif fh, err := os.OpenFile(f[1], os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
\t\t\tfh.WriteString(f[0] + s + "\\n")
\t\t\tfh.Close()
\t\t}
\t}
\tseen := append([]string{}, stash...)
\tfor _, f := range files() {
\t\tif data, err := os.ReadFile(f[1]); err == nil {
\t\t\tseen = append(seen, string(data))
\t\t}
\t}
\ttext := strings.Join(seen, "|")
\tfmt.Println(text, "out:"+s)
\tfmt.Fprintln(os.Stderr, text, "err:"+s)
\tif strings.HasPrefix(s, "HIDDEN") {
\t\tpanic("raise:" + s)
\t}
\treturn text
}
""",
}
CHANNELS = ("ws:", "home:", "tmp:", "mem:", "out:", "err:", "raise:")
"""How the attack tags the hidden input it sends down each channel: a file in the
workspace, in the home directory, in /tmp; kept in memory; the hidden case's
stdout, stderr and error message."""


def leaked(text: str, secret: str) -> list[str]:
    """The channels through which ``secret`` reached ``text`` ("plain": untagged)."""
    found = [tag for tag in CHANNELS if tag + secret in text]
    return found or (["plain"] if secret in text else [])


async def hidden_session(api: Api, account: Account, secret: str) -> dict[str, str]:
    """A question whose cases are visible, hidden (input ``secret``), visible; a session."""
    cases = [
        {"name": "first", "input": ["visible-a"], "expected": 0, "hidden": False},
        {"name": "secret-case", "input": [secret], "expected": 0, "hidden": True},
        {"name": "last", "input": ["visible-b"], "expected": 0, "hidden": False},
    ]
    question = {
        "title": "Probe",
        "prompt": "Return the length.",
        "languages": [
            {
                "language": lang,
                "entrypoint": ENTRY[lang],
                "solutionPath": PATHS[lang],
                "starterFiles": [],
            }
            for lang in PATHS
        ],
        "testCases": cases,
    }
    created = await api(CREATE_QUESTION, {"input": question}, token=account["interviewerToken"])
    question_id = created.ok()["createQuestion"]["id"]
    session = await api(
        CREATE_SESSION,
        {
            "input": {
                "questionId": question_id,
                "candidateName": "Mallory",
                "candidateEmail": random_email(),
            }
        },
        token=account["atsToken"],
    )
    made = session.ok()["createSession"]
    return {"session": made["session"]["id"], "candidate": made["candidateToken"]}


async def run_and_wait(api: Api, session: str, language: str, token: str) -> dict[str, Any]:
    started = await api(RUN_TESTS, {"s": session, "l": language}, token=token)
    run_id = started.ok()["runTests"]["id"]

    async def ended() -> dict[str, Any] | None:
        run = (await api(TEST_RUN, {"id": run_id}, token=token)).ok()["testRun"]
        return run if run["status"] in {"FINISHED", "ERROR"} else None  # type: ignore[no-any-return]

    return await wait_until(ended, 60, what="the test run to finish")


async def candidate_can_read(api: Api, session: str, token: str) -> str:
    """Everything the candidate can read back about the session, as one text."""
    seen: list[Any] = []
    recording = await api(EVENTS, {"s": session, "a": 0}, token=token)
    seen.append(recording.ok())
    listing = (await api(FILES, {"s": session}, token=token)).ok()["files"]
    seen.append(listing)
    for entry in listing:
        if entry["kind"] == "file":
            seen.append((await api(FILE, {"s": session, "p": entry["path"]}, token=token)).ok())
    command = "cat /workspace/leak.txt ~/leak.txt /tmp/leak.txt; grep -r HIDDEN /workspace ~ /tmp"
    seen.append((await api(RUN, {"s": session, "c": command, "t": 20}, token=token)).ok())
    return json.dumps(seen)


@pytest.mark.parametrize("language", ["PYTHON", "JAVASCRIPT", "TYPESCRIPT", "GO"])
async def test_hidden_input_leaks_through_no_channel(
    api: Api, account: Account, language: str
) -> None:
    secret = f"HIDDEN{secrets.token_hex(8)}"
    made = await hidden_session(api, account, secret)
    session, token = made["session"], made["candidate"]
    (await api(START, {"s": session}, token=token)).ok()
    wrote = await api(
        WRITE, {"s": session, "p": PATHS[language], "c": ATTACKS[language]}, token=token
    )
    wrote.ok()

    first = await run_and_wait(api, session, language, token)
    second = await run_and_wait(api, session, language, token)
    for run in (first, second):
        assert run["status"] == "FINISHED", run
        assert run["compileError"] is None, run["compileError"]
        assert run["error"] is None
        assert leaked(json.dumps(run), secret) == []
        hidden = [r for r in run["results"] if r["hidden"]]
        assert [set(k for k, v in r.items() if v is not None) for r in hidden] == [
            {"index", "hidden", "passed"}
        ]
        # The visible cases ran and printed what they had collected: no secret.
        last = run["results"][2]
        assert last["actual"] is not None
        assert "visible-b" in last["actual"]
    assert leaked(await candidate_can_read(api, session, token), secret) == []
    file_result = await api(FILE, {"s": session, "p": "leak.txt"}, token=token)
    assert file_result.codes == ["NOT_FOUND"]

    # Staff are trusted and see hidden details: the attack did see the input.
    staff = await api(TEST_RUN, {"id": first["id"]}, token=account["interviewerToken"])
    hidden_row = staff.ok()["testRun"]["results"][1]
    assert hidden_row["hidden"] is True
    assert "raise:" + secret in (hidden_row["error"] or "")
    assert "out:" + secret in (hidden_row["output"] or "")


LIVE = """subscription($s: ID!, $a: Int!) { sessionEvents(sessionId: $s, afterSeq: $a) {
  lastSeq events { seq type ... on TestCaseEvent { hidden name verdict durationMs error }
  ... on TestRunEvent { runStatus error compileError } }
} }"""
PROGRESS = """subscription($r: ID!) { testRunProgress(runId: $r) { events {
  seq type
  ... on TestCaseEvent { index hidden passed name verdict durationMs error }
  ... on TestRunEvent { runStatus error compileError }
} } }"""


RAISING = {
    "PYTHON": ATTACKS["PYTHON"].replace("    return text\n", "    raise RuntimeError(text)\n"),
    "JAVASCRIPT": ATTACKS["JAVASCRIPT"].replace("return text;", "throw new Error(text);"),
    "TYPESCRIPT": ATTACKS["TYPESCRIPT"].replace("return text;", "throw new Error(text);"),
    "GO": ATTACKS["GO"].replace("\treturn text\n", "\tpanic(text)\n"),
}
"""The attacks, but visible cases fail with what was collected: the visible error is
in the case's event, which every watcher of the session gets."""


@pytest.mark.parametrize("language", ["PYTHON", "JAVASCRIPT", "TYPESCRIPT", "GO"])
async def test_hidden_input_stays_out_of_live_streams(
    live_server: ServerProcess, account: Account, language: str
) -> None:
    """sessionEvents and testRunProgress, as the candidate, over a real WebSocket."""
    assert all(RAISING[lang] != ATTACKS[lang] for lang in ATTACKS)
    secret = f"HIDDEN{secrets.token_hex(8)}"
    async with httpx.AsyncClient(base_url=live_server.url, timeout=60) as http:
        api = Api(http)
        made = await hidden_session(api, account, secret)
        session, token = made["session"], made["candidate"]
        (await api(START, {"s": session}, token=token)).ok()
        write = {"s": session, "p": PATHS[language], "c": RAISING[language]}
        (await api(WRITE, write, token=token)).ok()
        watcher = await GraphQLWS.connect(live_server.ws_url, token)
        await watcher.subscribe(LIVE, {"s": session, "a": 0})
        run_id = (await api(RUN_TESTS, {"s": session, "l": language}, token=token)).ok()[
            "runTests"
        ]["id"]
        progress = await GraphQLWS.connect(live_server.ws_url, token)
        await progress.subscribe(PROGRESS, {"r": run_id})
        streamed: list[Any] = []
        async with asyncio.timeout(60):
            async for message in progress.messages():
                if message["type"] == "complete":
                    break
                streamed.append(message)
        finished = [
            e
            for m in streamed
            for e in m["payload"]["data"]["testRunProgress"]["events"]
            if e["type"] == "testrun.finished"
        ]
        assert finished, streamed
        live: list[Any] = []
        while True:
            try:
                live.append(await watcher.next_message(timeout=1.5))
            except TimeoutError:
                break
        await watcher.close()
        await progress.close()
    text = json.dumps([streamed, live])
    assert "testrun.case" in text
    assert "mem:visible-a" in text  # the visible cases' errors did reach the watchers
    assert leaked(text, secret) == []
