"""The escape battery: hostile commands through ``runCommand``, on the real local sandbox.

Each case checks the containment from the outside (the host's view), and the
resource cases also check that the server keeps answering other requests
while the sandbox misbehaves.
"""

from __future__ import annotations

import asyncio
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Account
from tests.support import Api
from tests.workspace_support import RUN, TERMINATE, run, start

ROOT = Path(__file__).resolve().parent.parent


def pgrep(pattern: str) -> list[str]:
    """Host pids whose command line matches: the host's view of the sandbox."""
    found = subprocess.run(["pgrep", "-f", pattern], check=False, capture_output=True, text=True)
    return found.stdout.split()


async def wait_until(condition: Callable[[], bool], *, attempts: int = 100) -> bool:
    for _ in range(attempts):
        if condition():
            return True
        await asyncio.sleep(0.05)
    return False


@pytest.fixture
async def sandbox(api: Api, account: Account) -> Account:
    await start(api, account)
    return account


async def test_no_network_but_loopback(api: Api, sandbox: Account) -> None:
    interfaces = await run(api, sandbox, "tail -n +3 /proc/net/dev | cut -d: -f1 | tr -d ' '")
    assert interfaces["stdout"].split() == ["lo"]
    for port in (5432, 6379):  # PostgreSQL and Redis listen on the host's loopback
        probe = await run(
            api,
            sandbox,
            f"python3 -c 'import socket; socket.create_connection((\"127.0.0.1\", {port}), 2)'",
        )
        assert probe["exitCode"] != 0
        assert "refused" in probe["stderr"].lower() or "unreachable" in probe["stderr"].lower()


async def test_host_files_are_invisible(api: Api, sandbox: Account) -> None:
    for command in (f"ls {ROOT}", "cat /etc/shadow", "ls /root/.pyenv", "ls /var/lib/postgresql"):
        result = await run(api, sandbox, command)
        assert result["exitCode"] != 0, (command, result)


async def test_sandboxed_processes_are_not_root_on_the_host(api: Api, sandbox: Account) -> None:
    marker = "4242.5"
    running = asyncio.create_task(
        api(
            RUN,
            {"s": sandbox["sessionId"], "c": f"sleep {marker}", "t": 30},
            token=sandbox["candidateToken"],
        )
    )
    assert await wait_until(lambda: bool(pgrep(f"^sleep {marker}"))), "never started"
    pids = pgrep(f"^sleep {marker}")
    status = Path(f"/proc/{pids[0]}/status").read_text()
    real_uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
    assert real_uid != 0
    running.cancel()
    await api(TERMINATE, {"s": sandbox["sessionId"]}, token=sandbox["candidateToken"])


async def test_environment_has_no_server_secrets(
    api: Api, sandbox: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("INTERVIEWLM_CANARY_SECRET", "canary-8f3a")
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-canary")
    result = await run(api, sandbox, "env")
    assert "canary" not in result["stdout"]
    for name in ("DATABASE_URL", "REDIS_URL", "ANTHROPIC_API_KEY", "MODAL_TOKEN_SECRET"):
        assert f"{name}=" not in result["stdout"]


async def _keeps_answering(
    api: Api, account: Account, hostile: str, timeout: int
) -> dict[str, Any]:
    """Run ``hostile`` while issuing other requests; both must complete."""
    task = asyncio.create_task(
        api(
            RUN,
            {"s": account["sessionId"], "c": hostile, "t": timeout},
            token=account["candidateToken"],
        )
    )
    answered = 0
    while not task.done():
        viewer = await api("{ viewer { kind } }", token=account["interviewerToken"])
        assert viewer.ok()["viewer"]["kind"] == "INTERVIEWER"
        answered += 1
        await asyncio.sleep(0.05)
    assert answered >= 1
    return (await task).ok()["runCommand"]  # type: ignore[no-any-return]


async def test_fork_bomb_is_contained(api: Api, sandbox: Account) -> None:
    result = await _keeps_answering(api, sandbox, "bomb() { bomb | bomb & }; bomb; sleep 3", 10)
    assert result["durationMs"] < 10_000 or result["timedOut"]
    after = await run(api, sandbox, "echo alive")
    assert after["stdout"] == "alive\n"


async def test_memory_hog_is_killed(api: Api, sandbox: Account) -> None:
    hog = "python3 -c 'x = bytearray(4 * 1024 ** 3); print(len(x))'"
    result = await _keeps_answering(api, sandbox, hog, 20)
    assert result["exitCode"] != 0
    assert "4294967296" not in result["stdout"]


async def test_disk_filler_is_stopped(api: Api, sandbox: Account) -> None:
    result = await _keeps_answering(
        api, sandbox, "dd if=/dev/zero of=fill.bin bs=1M count=4096 2>&1; ls -l fill.bin", 60
    )
    size = int(result["stdout"].split()[-5]) if "fill.bin" in result["stdout"] else 0
    assert size < 4096 * 1024 * 1024


async def test_infinite_loop_times_out(api: Api, sandbox: Account) -> None:
    result = await _keeps_answering(api, sandbox, "while :; do :; done", 2)
    assert result["timedOut"] is True
    assert result["exitCode"] is None


async def test_output_flood_is_capped(api: Api, sandbox: Account) -> None:
    result = await _keeps_answering(api, sandbox, "head -c 100000000 /dev/zero | tr '\\0' y", 60)
    assert result["truncated"] is True
    assert len(result["stdout"]) < 1_100_000


async def test_nothing_survives_terminate(api: Api, sandbox: Account) -> None:
    marker = "987654"
    running = asyncio.create_task(
        api(
            RUN,
            {"s": sandbox["sessionId"], "c": f"sleep {marker} & sleep {marker}1", "t": 120},
            token=sandbox["candidateToken"],
        )
    )
    assert await wait_until(lambda: bool(pgrep(f"sleep {marker}"))), "never started"
    await api(TERMINATE, {"s": sandbox["sessionId"]}, token=sandbox["candidateToken"])
    result = await asyncio.wait_for(running, 15)
    assert result.errors or result.data["runCommand"]["exitCode"] != 0
    gone = await wait_until(lambda: not pgrep(f"sleep {marker}"))
    assert gone, "sandbox processes outlived terminateSandbox"
