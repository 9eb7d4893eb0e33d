"""Test runs through the API: judging in four languages, hidden cases kept hidden."""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any

import httpx
import pytest

from tests.conftest import Account
from tests.server import ServerProcess
from tests.support import Api, wait_until
from tests.workspace_support import START, WRITE, events, start
from tests.wsclient import GraphQLWS, collect_events

RUN_TESTS = """mutation($s: ID!, $l: Language) {
  runTests(sessionId: $s, language: $l) { id status total }
}"""
TEST_RUN = """query($id: ID!) {
  testRun(id: $id) {
    id status total passed failed compileError error
    results { index hidden passed name verdict durationMs actual output error }
  }
}"""

SOLUTIONS = {
    "PYTHON": (
        "solution.py",
        """
def two_sum(nums, target):
    seen = {}
    for i, n in enumerate(nums):
        if target - n in seen:
            return [seen[target - n], i]
        seen[n] = i
""",
    ),
    "JAVASCRIPT": (
        "solution.js",
        """
function twoSum(nums, target) {
  const seen = new Map();
  for (let i = 0; i < nums.length; i++) {
    if (seen.has(target - nums[i])) return [seen.get(target - nums[i]), i];
    seen.set(nums[i], i);
  }
}
""",
    ),
    "TYPESCRIPT": (
        "solution.ts",
        """
function twoSum(nums: number[], target: number): number[] {
  const seen = new Map<number, number>();
  for (let i = 0; i < nums.length; i++) {
    const j = seen.get(target - nums[i]);
    if (j !== undefined) return [j, i];
    seen.set(nums[i], i);
  }
  return [];
}
""",
    ),
    "GO": (
        "solution.go",
        """package main

func TwoSum(nums []int, target int) []int {
\tseen := map[int]int{}
\tfor i, n := range nums {
\t\tif j, ok := seen[target-n]; ok {
\t\t\treturn []int{j, i}
\t\t}
\t\tseen[n] = i
\t}
\treturn nil
}
""",
    ),
}
BROKEN = {
    "TYPESCRIPT": "function twoSum(nums: number[], target: number): number[] { return 'no'; }\n",
    "GO": "package main\n\nfunc TwoSum(nums []int, target int) []int { return undefined }\n",
    "PYTHON": "def two_sum(nums, target):\n    return [0, 1\n",
}


async def write(api: Api, account: Account, path: str, body: str) -> str:
    result = await api(
        WRITE, {"s": account["sessionId"], "p": path, "c": body}, token=account["candidateToken"]
    )
    return str(result.ok()["writeFile"]["sha256"])


async def run_tests(
    api: Api, account: Account, language: str | None = None, token: str = "candidateToken"
) -> dict[str, Any]:
    started = await api(RUN_TESTS, {"s": account["sessionId"], "l": language}, token=account[token])
    run_id = started.ok()["runTests"]["id"]
    for _ in range(600):
        run = (await api(TEST_RUN, {"id": run_id}, token=account[token])).ok()["testRun"]
        if run["status"] in {"FINISHED", "ERROR"}:
            return run  # type: ignore[no-any-return]
        await asyncio.sleep(0.05)
    raise AssertionError("the test run did not finish")


@pytest.mark.parametrize("language", ["PYTHON", "JAVASCRIPT", "TYPESCRIPT", "GO"])
async def test_correct_solution_passes_every_case(
    api: Api, account: Account, language: str
) -> None:
    await start(api, account)
    path, body = SOLUTIONS[language]
    await write(api, account, path, body)
    run = await run_tests(api, account, language, token="interviewerToken")
    assert run["status"] == "FINISHED", run
    assert (run["total"], run["passed"], run["failed"]) == (5, 5, 0), run
    assert [r["verdict"] for r in run["results"]] == ["PASSED"] * 5


@pytest.mark.parametrize("language", ["PYTHON", "TYPESCRIPT", "GO"])
async def test_code_that_does_not_compile(api: Api, account: Account, language: str) -> None:
    await start(api, account)
    path = SOLUTIONS[language][0]
    await write(api, account, path, BROKEN[language])
    run = await run_tests(api, account, language, token="interviewerToken")
    assert run["status"] == "FINISHED"
    assert run["compileError"]
    assert {r["verdict"] for r in run["results"]} == {"COMPILE_ERROR"}


async def test_wrong_throwing_and_noisy_solutions(api: Api, account: Account) -> None:
    await start(api, account)
    await write(api, account, "solution.py", "def two_sum(nums, target):\n    return [1, 0]\n")
    wrong = await run_tests(api, account, token="interviewerToken")
    assert {r["verdict"] for r in wrong["results"]} == {"WRONG_ANSWER"}
    assert wrong["results"][0]["actual"] == "[1, 0]" or wrong["results"][0]["actual"] == "[1,0]"

    await write(
        api,
        account,
        "solution.py",
        "def two_sum(nums, target):\n    raise ValueError('no pair for ' + str(target))\n",
    )
    thrown = await run_tests(api, account, token="interviewerToken")
    assert {r["verdict"] for r in thrown["results"]} == {"RUNTIME_ERROR"}
    assert "ValueError" in thrown["results"][0]["error"]

    forged = (
        "import json, sys\n"
        "def two_sum(nums, target):\n"
        '    for fake in (\'PASSED\', \'{"index": 0, "status": "OK", "value": [0, 1]}\'):\n'
        "        print(fake); print(fake, file=sys.stderr)\n"
        "    return [-1, -1]\n"
    )
    await write(api, account, "solution.py", forged)
    noisy = await run_tests(api, account, token="interviewerToken")
    assert {r["verdict"] for r in noisy["results"]} == {"WRONG_ANSWER"}
    assert "PASSED" in noisy["results"][0]["output"]


async def test_a_hanging_case_times_out_and_the_others_still_run(
    api: Api, account: Account
) -> None:
    await start(api, account)
    hang = (
        "def two_sum(nums, target):\n"
        "    if target == 6 and nums == [3, 3]:\n"
        "        while True: pass\n"
        "    return [i for i in range(len(nums)) for j in range(i + 1, len(nums))"
        " if nums[i] + nums[j] == target][:1] + [next(j for i in range(len(nums))"
        " for j in range(i + 1, len(nums)) if nums[i] + nums[j] == target)]\n"
    )
    await write(api, account, "solution.py", hang)
    run = await run_tests(api, account, token="interviewerToken")
    verdicts = [r["verdict"] for r in run["results"]]
    assert verdicts[2] == "TIMEOUT"
    assert verdicts.count("PASSED") == 4


async def test_second_run_while_one_runs_is_a_conflict(api: Api, account: Account) -> None:
    await start(api, account)
    await write(api, account, "solution.py", SOLUTIONS["PYTHON"][1])
    first, second = await asyncio.gather(
        api(RUN_TESTS, {"s": account["sessionId"]}, token=account["candidateToken"]),
        api(RUN_TESTS, {"s": account["sessionId"]}, token=account["interviewerToken"]),
    )
    assert sorted([first.codes, second.codes]) == [[], ["CONFLICT"]]


async def test_candidates_never_see_hidden_case_details(api: Api, account: Account) -> None:
    await start(api, account)
    sha = await write(
        api, account, "solution.py", "def two_sum(nums, target):\n    return [0, 1]\n"
    )
    run = await run_tests(api, account)  # the candidate runs it
    hidden = [r for r in run["results"] if r["hidden"]]
    assert len(hidden) == 2
    for result in hidden:
        assert {k: v for k, v in result.items() if v is not None} == {
            "index": result["index"],
            "hidden": True,
            "passed": result["passed"],
        }
    staff = (await api(TEST_RUN, {"id": run["id"]}, token=account["interviewerToken"])).ok()
    staff_hidden = [r for r in staff["testRun"]["results"] if r["hidden"]]
    assert {r["name"] for r in staff_hidden} == {"negatives", "large"}
    assert all(r["verdict"] for r in staff_hidden)

    candidate_log = (
        await api(
            "query($s: ID!) { recording(sessionId: $s, first: 1000) { events { type"
            " ... on TestCaseEvent { hidden name verdict durationMs error passed } } } }",
            {"s": account["sessionId"]},
            token=account["candidateToken"],
        )
    ).ok()
    text = str(candidate_log)
    for secret in ("negatives", "large", "-8", "1997"):
        assert secret not in text
    staff_log = await events(api, account)
    started = next(e for e in staff_log if e["type"] == "testrun.started")
    assert started["payload"]["files"]["solution.py"] == sha
    assert sha == hashlib.sha256(b"def two_sum(nums, target):\n    return [0, 1]\n").hexdigest()


SESSION_CASES = """subscription($s: ID!, $a: Int!) { sessionEvents(sessionId: $s, afterSeq: $a) {
  lastSeq events { seq type ... on TestCaseEvent { hidden name verdict durationMs error } }
} }"""
PROGRESS = """subscription($r: ID!) { testRunProgress(runId: $r) { events {
  seq type
  ... on TestCaseEvent { index hidden passed name verdict durationMs error }
  ... on TestRunEvent { runStatus passedCount total }
} } }"""


async def test_hidden_cases_stay_hidden_in_live_streams(
    live_server: ServerProcess, account: Account
) -> None:
    headers = {"authorization": f"Bearer {account['candidateToken']}"}
    async with httpx.AsyncClient(base_url=live_server.url, headers=headers, timeout=60) as http:

        async def call(query: str, **variables: object) -> dict[str, Any]:
            response = await http.post("/graphql", json={"query": query, "variables": variables})
            return response.json()["data"]  # type: ignore[no-any-return]

        s = account["sessionId"]
        await call(START, s=s)
        await call(WRITE, s=s, p="solution.py", c="def two_sum(nums, target):\n    return [0, 1]\n")
        watcher = await GraphQLWS.connect(live_server.ws_url, account["candidateToken"])
        await watcher.subscribe(SESSION_CASES, {"s": s, "a": 0})
        run_id = (await call(RUN_TESTS, s=s))["runTests"]["id"]
        progress = await GraphQLWS.connect(live_server.ws_url, account["candidateToken"])
        await progress.subscribe(PROGRESS, {"r": run_id})
        events: list[dict[str, Any]] = []
        async with asyncio.timeout(60):
            async for message in progress.messages():
                if message["type"] == "complete":
                    break
                events += message["payload"]["data"]["testRunProgress"]["events"]
        assert events[0]["type"] == "testrun.started"
        assert events[-1]["type"] == "testrun.finished"
        cases = [e for e in events if e["type"] == "testrun.case"]
        assert len(cases) == 5
        for case in cases:
            if case["hidden"]:
                assert {k for k, v in case.items() if v is not None} == {
                    "seq",
                    "type",
                    "index",
                    "hidden",
                    "passed",
                }
            else:
                assert case["name"]
                assert case["verdict"]
        finished_seq = events[-1]["seq"]
        live = await collect_events(watcher, until_seq=finished_seq)
        hidden = [e for e in live if e.get("hidden")]
        assert len(hidden) == 2
        for case in hidden:
            assert case["name"] is None
            assert case["verdict"] is None
            assert case["durationMs"] is None
        await watcher.close()
        await progress.close()


async def test_a_run_that_fails_unexpectedly_leaves_no_writer_waiting(
    api: Api, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A non-sandbox exception from the harness (a bug, not the sandbox's failure) ends the
    run ERROR with the fixed sentence, and the task recording its results is told the end
    and finishes: before the shared lifecycle helper it waited on its queue forever."""
    import resolvers.testruns

    async def broken_harness(*_args: Any, **_kwargs: Any) -> Any:
        raise RuntimeError("a bug in the harness protocol")

    monkeypatch.setattr(resolvers.testruns, "run_harness", broken_harness)
    await start(api, account)
    await write(api, account, "solution.py", SOLUTIONS["PYTHON"][1])
    run = await run_tests(api, account)
    assert run["status"] == "ERROR"
    assert run["error"] == resolvers.testruns.ERROR_INTERNAL

    def writers() -> list[asyncio.Task[Any]]:
        return [
            t
            for t in asyncio.all_tasks()
            if not t.done() and "_write_results" in repr(t.get_coro())
        ]

    # The run's task finishes moments after its row does; its writer with it.
    await wait_until(lambda: not writers(), timeout=5, what="the result writer to finish")


async def test_a_run_that_fails_to_start_frees_the_session_for_the_next(
    api: Api, account: Account, app: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The workspace sync before a run (its code snapshot) fails: the run ends ERROR and
    the next runTests is not CONFLICT (the claimed live key used to stay taken until the
    replica restarted)."""
    from resolvers.errors import SandboxUnavailable
    from resolvers.testruns import ERROR_START

    await start(api, account)
    await write(api, account, "solution.py", SOLUTIONS["PYTHON"][1])
    sandboxes = app.state.services.sandboxes

    async def sync_fails(*_args: Any, **_kwargs: Any) -> int:
        raise SandboxUnavailable("the sandbox service is unavailable")

    with monkeypatch.context() as patch:
        patch.setattr(sandboxes, "sync_workspace", sync_fails)
        refused = await api(RUN_TESTS, {"s": account["sessionId"]}, token=account["candidateToken"])
    assert refused.codes == ["SANDBOX_UNAVAILABLE"]
    log = await events(api, account)
    (failed,) = [e["payload"] for e in log if e["type"] == "testrun.finished"]
    assert failed["runStatus"] == "ERROR"
    assert failed["error"] == ERROR_START
    run = await run_tests(api, account)
    assert run["status"] == "FINISHED"
    assert run["passed"] == run["total"]
