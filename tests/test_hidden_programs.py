"""Issue 9 §2 for program-mode questions (stdin -> stdout), in four languages.

Real components, as in ``tests.test_hidden_leaks``.  JavaScript, TypeScript
and Go programs run as one process per case, all in one sandbox command, so
/tmp would carry a hidden input from a hidden case to a later visible one;
Python programs run in a reused worker (a stash in ``builtins`` survives
between cases).  The cases are visible, hidden, visible; a visible case's
stdout (its answer, shown to the candidate) prints everything collected.
"""

from __future__ import annotations

import json
import secrets

import pytest

from tests.conftest import Account, random_email
from tests.support import Api
from tests.test_hidden_leaks import (
    CREATE_QUESTION,
    CREATE_SESSION,
    PATHS,
    candidate_can_read,
    leaked,
    run_and_wait,
)
from tests.workspace_support import START, WRITE

PROGRAMS = {
    "PYTHON": """
import builtins, os, sys
s = sys.stdin.read().strip()
stash = builtins.__dict__.setdefault("_ilm_stash", [])
stash.append("mem:" + s)
FILES = {"ws:": "/workspace/leak.txt", "home:": os.path.expanduser("~/leak.txt"),
         "tmp:": "/tmp/leak.txt"}
for tag, path in FILES.items():
    try:
        with open(path, "a") as fh:
            fh.write(tag + s + "\\n")
    except OSError:
        pass
seen = list(stash)
for path in FILES.values():
    try:
        with open(path) as fh:
            seen.append(fh.read())
    except OSError:
        pass
print("|".join(seen), "out:" + s)
print("err:" + s, file=sys.stderr)
if s.startswith("HIDDEN"):
    raise SystemExit("raise:" + s)
""",
    "JAVASCRIPT": """
const fs = require("fs");
const os = require("os");
const s = fs.readFileSync(0, "utf8").trim();
const FILES = {"ws:": "/workspace/leak.txt", "home:": os.homedir() + "/leak.txt",
               "tmp:": "/tmp/leak.txt"};
for (const [tag, p] of Object.entries(FILES)) {
  try { fs.appendFileSync(p, tag + s + "\\n"); } catch (e) {}
}
const seen = [];
for (const p of Object.values(FILES)) {
  try { seen.push(fs.readFileSync(p, "utf8")); } catch (e) {}
}
console.log(seen.join("|"), "out:" + s);
console.error("err:" + s);
if (s.startsWith("HIDDEN")) throw new Error("raise:" + s);
""",
    "TYPESCRIPT": """
import * as fs from "fs";
import * as os from "os";
const s: string = fs.readFileSync(0, "utf8").trim();
const FILES: Record<string, string> = {"ws:": "/workspace/leak.txt",
  "home:": os.homedir() + "/leak.txt", "tmp:": "/tmp/leak.txt"};
for (const [tag, p] of Object.entries(FILES)) {
  try { fs.appendFileSync(p, tag + s + "\\n"); } catch (e) {}
}
const seen: string[] = [];
for (const p of Object.values(FILES)) {
  try { seen.push(fs.readFileSync(p, "utf8")); } catch (e) {}
}
console.log(seen.join("|"), "out:" + s);
console.error("err:" + s);
if (s.startsWith("HIDDEN")) throw new Error("raise:" + s);
""",
    "GO": """package main

import (
\t"fmt"
\t"io"
\t"os"
\t"strings"
)

func main() {
\tdata, _ := io.ReadAll(os.Stdin)
\ts := strings.TrimSpace(string(data))
\thome, _ := os.UserHomeDir()
\tfiles := [][2]string{{"ws:", "/workspace/leak.txt"}, {"home:", home + "/leak.txt"},
\t\t{"tmp:", "/tmp/leak.txt"}}
\tfor _, f := range files {
\t\tif fh, err := os.OpenFile(f[1], os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644); err == nil {
\t\t\tfh.WriteString(f[0] + s + "\\n")
\t\t\tfh.Close()
\t\t}
\t}
\tvar seen []string
\tfor _, f := range files {
\t\tif b, err := os.ReadFile(f[1]); err == nil {
\t\t\tseen = append(seen, string(b))
\t\t}
\t}
\tfmt.Println(strings.Join(seen, "|"), "out:"+s)
\tfmt.Fprintln(os.Stderr, "err:"+s)
\tif strings.HasPrefix(s, "HIDDEN") {
\t\tpanic("raise:" + s)
\t}
}
""",
}


async def program_session(api: Api, account: Account, secret: str) -> tuple[str, str]:
    cases = [
        {"name": "first", "stdin": "visible-a\n", "expectedStdout": "0", "hidden": False},
        {"name": "secret-case", "stdin": secret + "\n", "expectedStdout": "0", "hidden": True},
        {"name": "last", "stdin": "visible-b\n", "expectedStdout": "0", "hidden": False},
    ]
    question = {
        "title": "Echo",
        "prompt": "A program.",
        "languages": [
            {"language": lang, "entrypoint": "main", "solutionPath": PATHS[lang]} for lang in PATHS
        ],
        "testCases": cases,
    }
    created = await api(CREATE_QUESTION, {"input": question}, token=account["interviewerToken"])
    data = {
        "questionId": created.ok()["createQuestion"]["id"],
        "candidateName": "Mallory",
        "candidateEmail": random_email(),
    }
    made = (await api(CREATE_SESSION, {"input": data}, token=account["atsToken"])).ok()
    return made["createSession"]["session"]["id"], made["createSession"]["candidateToken"]


@pytest.mark.parametrize("language", ["PYTHON", "JAVASCRIPT", "TYPESCRIPT", "GO"])
async def test_hidden_stdin_leaks_through_no_channel(
    api: Api, account: Account, language: str
) -> None:
    secret = f"HIDDEN{secrets.token_hex(8)}"
    session, token = await program_session(api, account, secret)
    (await api(START, {"s": session}, token=token)).ok()
    write = {"s": session, "p": PATHS[language], "c": PROGRAMS[language]}
    (await api(WRITE, write, token=token)).ok()
    runs = [await run_and_wait(api, session, language, token) for _ in range(2)]
    for run in runs:
        assert run["status"] == "FINISHED", run
        assert run["compileError"] is None, run["compileError"]
        assert "visible-b" in run["results"][2]["actual"]  # the visible case printed
        assert leaked(json.dumps(run), secret) == []
    assert leaked(await candidate_can_read(api, session, token), secret) == []
    staff = await api(
        "query($id: ID!) { testRun(id: $id) { results { actual output error } } }",
        {"id": runs[0]["id"]},
        token=account["interviewerToken"],
    )
    assert "out:" + secret in json.dumps(staff.ok())
