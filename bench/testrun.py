"""Test runs, timed from the runTests mutation to a FINISHED run, per language.

The baseline, in the same run and the same sandbox, judges the same 20 cases
the way a naive executor does: one fresh process per case (for TypeScript and
Go that includes compiling per case, since there is nothing to reuse). The
ratio is baseline / ours.

Run: .venv/bin/python bench/testrun.py [--runs N] [--languages PYTHON,GO]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gql.app import create_app  # noqa: E402
from gql.settings import Settings  # noqa: E402
from modal_app.base import run as sandbox_run  # noqa: E402
from models.sandbox import SandboxRecord  # noqa: E402
from resolvers.database import migrate  # noqa: E402
from resolvers.seed import seed_demo  # noqa: E402

CASES = 20
SOLUTIONS = {
    "PYTHON": ("solution.py", "add", "def add(a, b):\n    return a + b\n"),
    "JAVASCRIPT": (
        "solution.js",
        "add",
        "function add(a, b) { return a + b; }\nmodule.exports = { add };\n",
    ),
    "TYPESCRIPT": (
        "solution.ts",
        "add",
        "export function add(a: number, b: number): number { return a + b; }\n",
    ),
    "GO": ("solution.go", "Add", "package main\n\nfunc Add(a int, b int) int { return a + b }\n"),
}
GO_MAIN = """package main

import ("encoding/json"; "fmt"; "os")

func main() {
\tvar args []int
\tjson.Unmarshal([]byte(os.Args[1]), &args)
\tfmt.Println(Add(args[0], args[1]))
}
"""


def baseline_command(language: str, args: list[int]) -> str:
    payload = json.dumps(args)
    if language == "PYTHON":
        return (
            f'python3 -c \'import json, sys; sys.path.insert(0, "."); from solution import add;'
            f" print(json.dumps(add(*{payload})))'"
        )
    if language == "JAVASCRIPT":
        return (
            f"node -e 'console.log(JSON.stringify(require(\"./solution.js\").add(...{payload})))'"
        )
    if language == "TYPESCRIPT":
        return (
            f"tsc --outDir /tmp/tsout solution.ts >/dev/null && node -e 'console.log(JSON."
            f'stringify(require("/tmp/tsout/solution.js").add(...{payload})))\''
        )
    # A fresh /tmp per sandbox command: set the module up each time, as a
    # per-case runner must.
    return (
        "mkdir -p /tmp/gobench && cp solution.go gobench_main.go /tmp/gobench/ && cd /tmp/gobench"
        f" && go mod init bench >/dev/null 2>&1; go run . '{payload}'"
    )


async def gql(http: httpx.AsyncClient, token: str, query: str, **variables: object) -> dict:
    response = await http.post(
        "/graphql",
        json={"query": query, "variables": variables},
        headers={"authorization": f"Bearer {token}"},
    )
    body = response.json()
    if body.get("errors"):
        raise RuntimeError(body["errors"])
    return body["data"]


QUESTION = """mutation($input: CreateQuestionInput!) { createQuestion(input: $input) { id } }"""
SESSION = """mutation($input: CreateSessionInput!) {
  createSession(input: $input) { session { id } candidateToken } }"""


async def bench_language(
    http: httpx.AsyncClient, app, seed: dict, language: str, runs: int
) -> tuple[float, float, int]:
    path, entry, body = SOLUTIONS[language]
    token = seed["interviewerToken"]
    question = await gql(
        http,
        token,
        QUESTION,
        input={
            "title": f"add ({language})",
            "prompt": "Add two numbers.",
            "languages": [{"language": language, "entrypoint": entry, "solutionPath": path}],
            "testCases": [
                {"name": f"c{i}", "input": [i, i * 2], "expected": i * 3, "hidden": i % 4 == 0}
                for i in range(CASES)
            ],
        },
    )
    session = await gql(
        http,
        token,
        SESSION,
        input={
            "questionId": question["createQuestion"]["id"],
            "candidateName": "Bench",
            "candidateEmail": "bench@example.com",
            "language": language,
        },
    )
    sid = session["createSession"]["session"]["id"]
    await gql(http, token, "mutation($s: ID!) { startSandbox(sessionId: $s) { id } }", s=sid)
    await gql(
        http,
        token,
        "mutation($s: ID!, $p: String!, $c: String!) {"
        " writeFile(sessionId: $s, path: $p, content: $c) { path } }",
        s=sid,
        p=path,
        c=body,
    )
    ours: list[float] = []
    for _ in range(runs + 1):  # the first run warms caches (Go build cache, tsc)
        started = time.perf_counter()
        run = await gql(http, token, "mutation($s: ID!) { runTests(sessionId: $s) { id } }", s=sid)
        run_id = run["runTests"]["id"]
        while True:
            state = await gql(
                http, token, "query($r: ID!) { testRun(id: $r) { status passed } }", r=run_id
            )
            if state["testRun"]["status"] in {"FINISHED", "ERROR"}:
                break
            await asyncio.sleep(0.01)
        ours.append((time.perf_counter() - started) * 1000)
        if state["testRun"]["passed"] != CASES:
            raise RuntimeError(f"{language}: {state}")
    ours = ours[1:]

    sandboxes = app.state.services.sandboxes
    record = await SandboxRecord.get(session_id=sid, state="RUNNING")
    backend_id = record.backend_id
    if language == "GO":
        await sandboxes.backend.write_file(backend_id, "gobench_main.go", GO_MAIN.encode())
    baseline_runs = 1 if language in {"GO", "TYPESCRIPT"} else max(1, runs // 2)
    baseline: list[float] = []
    for _ in range(baseline_runs):
        started = time.perf_counter()
        for i in range(CASES):
            command = baseline_command(language, [i, i * 2])
            result = await sandbox_run(sandboxes.backend, backend_id, command, timeout_s=60)
            if result.stdout.strip() != str(i * 3).encode():
                raise RuntimeError(f"baseline {language}: {result}")
        baseline.append((time.perf_counter() - started) * 1000)
    return statistics.median(ours), statistics.median(baseline), len(ours)


def workdir() -> Path:
    """A database and SANDBOX_ROOT the sandbox uids can traverse."""
    path = Path(tempfile.mkdtemp(prefix="interviewlm-bench-"))
    (path / "sb").mkdir()
    for directory in (path, path / "sb"):
        directory.chmod(0o711)
    return path


async def main(args: argparse.Namespace, workdir: Path) -> None:
    url = f"sqlite://{workdir / 'bench.sqlite3'}"
    await migrate(url)
    app = create_app(
        Settings.from_env(
            {"DATABASE_URL": url, "SANDBOX_ROOT": str(workdir / "sb"), "LOG_LEVEL": "WARNING"}
        )
    )
    rows = []
    async with app.router.lifespan_context(app):
        s = app.state.services
        seed = await seed_demo(log=s.log, public_url="http://bench", max_file_bytes=1 << 20)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://bench", timeout=120
        ) as http:
            for language in args.languages.split(","):
                ours, baseline, n = await bench_language(http, app, seed, language, args.runs)
                rows.append((language, ours, baseline, n))
    print(
        f"{CASES}-case test run, runTests mutation -> FINISHED (median of N runs after 1 warm-up)"
    )
    print(f"{'language':<11} {'ours ms':>9} {'1 process/case ms':>18} {'speed-up':>9} {'N':>3}")
    for language, ours, baseline, n in rows:
        print(f"{language:<11} {ours:9.1f} {baseline:18.1f} {baseline / ours:8.1f}x {n:3d}")
    python = next((r for r in rows if r[0] == "PYTHON"), None)
    if python:
        ok = python[1] <= 300 and python[2] / python[1] >= 5
        print(f"targets (Python <= 300 ms median, >= 5x): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--languages", default="PYTHON,JAVASCRIPT,TYPESCRIPT,GO")
    asyncio.run(main(parser.parse_args(), workdir()))
