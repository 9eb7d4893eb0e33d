"""The Modal backend, through the real modal SDK, against a protocol-level stand-in for Modal's API.

This checks the CLIENT SIDE only: our backend (``modal_app.modal``) and the
modal 1.6.4 SDK speaking gRPC to ``tests.modal_standin`` -- a stand-in for
Modal's control plane and task command router on loopback, whose sandboxes
are real bubblewrap containers (the local backend's launcher) with real
pipes and PTYs.  It is NOT Modal: it cannot show how Modal itself behaves
(image builds, gVisor, networking, volume commits); what still needs a run
against real Modal is listed in /work/notes/modal_standin.md.

No Modal account or network is needed; it runs as root with bubblewrap, as
the local backend's tests do, and must not skip in CI.
"""

from __future__ import annotations

import asyncio
import gc
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from grpclib import Status
from modal_proto import api_pb2

from modal_app.base import (
    BackendUnavailable,
    NetworkPolicy,
    SandboxError,
    SandboxSpec,
    SandboxStatus,
    SandboxTerminated,
)
from modal_app.modal.backend import ModalSandboxBackend
from modal_app.modal.spec import ModalOptions
from tests.modal_standin import ModalStandin
from tests.modal_standin.process import standin_process
from tests.modal_standin.server import remove_root
from tests.modal_standin.state import mint_id


@pytest.fixture
async def standin(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[ModalStandin]:
    # tempfile, not tmp_path: the sandbox uids must traverse every ancestor.
    root = Path(tempfile.mkdtemp(prefix="ilm-modal-standin-"))
    root.chmod(0o711)
    server = ModalStandin(root)
    await server.start()
    # The SDK reads MODAL_SERVER_URL on every client it builds.
    for key, value in server.environ().items():
        monkeypatch.setenv(key, value)
    try:
        yield server
    finally:
        await server.stop()
        remove_root(root)


@pytest.fixture
async def backend(standin: ModalStandin) -> AsyncIterator[ModalSandboxBackend]:
    # Built as gql/backends.py builds it for SANDBOX_BACKEND=modal.
    modal_backend = ModalSandboxBackend(
        token_id=standin.token_id, token_secret=standin.token_secret
    )
    await modal_backend.start()
    try:
        yield modal_backend
    finally:
        await modal_backend.aclose()


async def _collect(handle: object) -> tuple[bytes, bytes]:
    out, err = bytearray(), bytearray()
    async for chunk in handle.output():  # type: ignore[attr-defined]
        (out if chunk.stream == "stdout" else err).extend(chunk.data)
    return bytes(out), bytes(err)


def test_sandbox_ids_are_v2_shaped() -> None:
    """A V1-shaped id would switch the SDK to the V1 RPCs (SandboxWait, not SandboxWaitV2)."""
    from modal.sandbox._common import SandboxVersion, _get_sandbox_version

    assert _get_sandbox_version(mint_id("sb")) is SandboxVersion.V2


async def test_create_exec_stdin_terminate(
    backend: ModalSandboxBackend, standin: ModalStandin
) -> None:
    info = await backend.create(SandboxSpec(tags={"account": "acme", "session": "s1"}))
    assert info.status is SandboxStatus.RUNNING
    assert info.id.startswith("sb-")
    assert standin.sandboxes[info.id].tags["account"] == "acme"

    hi = await backend.exec(info.id, ["echo", "hi"])
    out, err = await _collect(hi)
    assert (out, err) == (b"hi\n", b"")
    assert (await hi.wait()).exit_code == 0

    cat = await backend.exec(info.id, ["sh", "-c", "cat; echo done >&2"])
    await cat.write_stdin(b"via stdin\n")
    await cat.close_stdin()
    out, err = await _collect(cat)
    assert (out, err) == (b"via stdin\n", b"done\n")
    assert (await cat.wait()).exit_code == 0

    # The V2 path end to end: router access fetched, then execs over the router.
    calls = standin.control.calls
    assert "SandboxCreateV2" in calls
    assert "SandboxGetCommandRouterAccess" in calls
    assert "AuthTokenGet" in calls

    await backend.terminate(info.id)
    assert await backend.status(info.id) is SandboxStatus.TERMINATED
    assert standin.sandboxes[info.id].container is None
    with pytest.raises(SandboxTerminated):
        await backend.exec(info.id, ["true"])


async def test_execs_share_one_container(backend: ModalSandboxBackend) -> None:
    """Like a Modal container (and unlike the local backend), execs share /tmp and pids."""
    info = await backend.create(SandboxSpec())
    sleeper = await backend.exec(info.id, ["sh", "-c", "echo $$ > /tmp/pid; exec sleep 30"])
    probe = await backend.exec(
        info.id,
        ["sh", "-c", "while [ ! -s /tmp/pid ]; do sleep 0.05; done; kill -0 $(cat /tmp/pid)"],
    )
    assert (await probe.wait()).exit_code == 0
    await sleeper.kill()  # the backend's kill helper is a separate exec
    status = await asyncio.wait_for(sleeper.wait(), 20)
    assert status.exit_code is None
    assert status.signal == 9
    await backend.terminate(info.id)


async def test_pty_is_a_controlling_terminal(backend: ModalSandboxBackend) -> None:
    info = await backend.create(SandboxSpec())
    term = await backend.open_pty(info.id, cols=100, rows=30, command=["sh"])
    await term.write(b"stty size; tty; exit 3\n")
    seen = bytearray()
    async for data in term.output():
        seen.extend(data)
    assert b"30 100" in seen
    assert b"/dev/pts/" in seen
    assert await term.wait() == 3
    await backend.terminate(info.id)


async def test_bad_credentials_fail_at_start(standin: ModalStandin) -> None:
    bad = ModalSandboxBackend(token_id=standin.token_id, token_secret="wrong")
    with pytest.raises(BackendUnavailable):
        await bad.start()


async def test_unavailable_control_plane_is_backend_unavailable(
    backend: ModalSandboxBackend, standin: ModalStandin
) -> None:
    standin.faults.unavailable.add("SandboxCreateV2")
    with pytest.raises(BackendUnavailable):
        await backend.create(SandboxSpec())
    assert standin.control.calls.count("SandboxCreateV2") > 1  # the SDK retried
    standin.faults.unavailable.clear()
    standin.faults.fail["SandboxCreateV2"] = (Status.RESOURCE_EXHAUSTED, "no capacity")
    with pytest.raises(Exception, match="quota or capacity"):
        await backend.create(SandboxSpec())


async def test_router_jwt_is_refreshed(backend: ModalSandboxBackend, standin: ModalStandin) -> None:
    """An expired router JWT (UNAUTHENTICATED) makes the SDK fetch fresh access, once."""
    # The SDK refreshes only a JWT that expires within 30 s (a revoked
    # long-lived one reads as AuthError): hand out short-lived ones.
    standin.router_jwt_ttl_s = 20
    info = await backend.create(SandboxSpec())
    assert (await (await backend.exec(info.id, ["true"])).wait()).exit_code == 0
    fetched = standin.control.calls.count("SandboxGetCommandRouterAccess")
    standin.rotate_router_jwt(info.id)
    handle = await backend.exec(info.id, ["echo", "again"])
    assert await _collect(handle) == (b"again\n", b"")
    assert standin.control.calls.count("SandboxGetCommandRouterAccess") == fetched + 1
    await backend.terminate(info.id)


async def test_modal_timeout_ends_the_sandbox(
    backend: ModalSandboxBackend, standin: ModalStandin
) -> None:
    info = await backend.create(SandboxSpec())
    await standin.expire(info.id)
    assert await backend.status(info.id) is SandboxStatus.TERMINATED
    with pytest.raises(SandboxTerminated):
        await backend.exec(info.id, ["true"])


async def test_pty_resize_reaches_the_terminal(backend: ModalSandboxBackend) -> None:
    """Issue 14, item 8 (client side): resize is an ``stty`` helper exec on the recorded tty."""
    info = await backend.create(SandboxSpec())
    term = await backend.open_pty(info.id, cols=80, rows=24, command=["sh"])
    output = term.output()
    await term.write(b"stty size\n")
    seen = bytearray()
    while b"24 80" not in seen:  # the terminal is up (an earlier resize can be lost: notes)
        seen.extend(await anext(output))
    await term.resize(132, 43)
    await term.write(b"stty size; exit\n")
    async for data in output:
        seen.extend(data)
    assert b"43 132" in seen
    await backend.terminate(info.id)


async def test_pty_resize_right_after_opening_is_kept(backend: ModalSandboxBackend) -> None:
    """The early-resize race (notes): a resize before the wrapper recorded the tty was lost,
    or undone by the wrapper's own initial ``stty``.  Several rounds: it was lost 6/20 times."""
    info = await backend.create(SandboxSpec())
    for round_ in range(3):
        term = await backend.open_pty(info.id, cols=80, rows=24, command=["sh"])
        cols = 100 + round_
        await term.resize(cols, 40)
        await term.write(b"stty size; exit\n")
        seen = bytearray()
        async for data in term.output():
            seen.extend(data)
        assert f"40 {cols}".encode() in seen, seen
    await backend.terminate(info.id)


async def test_volume_commits_when_the_sandbox_ends_on_its_own(
    backend: ModalSandboxBackend, standin: ModalStandin
) -> None:
    """Issue 14, item 8 (client side): the stand-in commits a volume only at the sandbox's
    end, as Modal does; a sandbox that times out still leaves its files readable."""
    info = await backend.create(SandboxSpec(tags={"session": "ends-alone"}))
    made = await backend.exec(info.id, ["sh", "-c", "echo final > result.txt"])
    assert (await made.wait()).exit_code == 0
    await standin.expire(info.id)  # Modal's timeout, not our terminate()
    assert await backend.read_file(info.id, "result.txt") == b"final\n"


# -- issue 14's Modal bugs, reproduced on the stand-in ------------------------------
# Each was a strict xfail reproducing the bug (items 1, 2, 4, 5, 6 and the
# terminate/wait ordering); each marker went with its fix in modal_app/modal/.


async def test_network_widening_on_an_allowlisted_sandbox(
    backend: ModalSandboxBackend, standin: ModalStandin
) -> None:
    info = await backend.create(SandboxSpec())
    created = standin.sandboxes[info.id].definition.network_access
    assert created.network_access_type == created.NetworkAccessType.ALLOWLIST
    assert list(created.allowed_cidrs) == []
    assert list(created.allowed_domains) == []
    handle = await backend.exec(
        info.id, ["true"], network=NetworkPolicy(allow_hosts=("127.0.0.1",))
    )
    assert (await handle.wait()).exit_code == 0
    widened = standin.sandboxes[info.id].network_changes
    assert list(widened[0].allowed_cidrs) == ["127.0.0.1/32"]
    await backend.terminate(info.id)


async def test_remove_lists_within_an_app(
    backend: ModalSandboxBackend, standin: ModalStandin
) -> None:
    info = await backend.create(SandboxSpec(tags={"session": "no-account"}))
    await backend.terminate(info.id)
    await backend.remove(info.id)
    listings = standin.control.requests_of("SandboxListV2")
    assert listings
    assert all(request.app_id for request in listings)


async def test_reattaching_does_not_leak_router_connections(
    backend: ModalSandboxBackend, standin: ModalStandin
) -> None:
    info = await backend.create(SandboxSpec())
    for _ in range(4):
        await backend.attach(info.id)  # a fresh handle from Sandbox.from_id each time
        assert (await (await backend.exec(info.id, ["true"])).wait()).exit_code == 0
    gc.collect()
    await asyncio.sleep(0.2)
    assert standin.router_connections(info.id) <= 2
    await backend.terminate(info.id)


async def test_terminate_while_a_wait_is_pending(
    backend: ModalSandboxBackend, standin: ModalStandin
) -> None:
    """Found with the stand-in: if the worker answers an exec's wait (NOT_FOUND) before the
    control plane reports the end, ``_wait_once`` polls, sees "running" and raises.  The
    replica that is terminating knows better: it should mark the sandbox ended first."""
    standin.faults.result_after_commit = True
    standin.faults.commit_delay_s = 1.0  # the wait's NOT_FOUND surely comes first
    info = await backend.create(SandboxSpec())
    handle = await backend.exec(info.id, ["sleep", "100"])
    await backend.terminate(info.id)
    status = await asyncio.wait_for(handle.wait(), 5)
    assert status.exit_code is None


async def test_exec_on_a_lost_worker_is_sandbox_terminated(
    backend: ModalSandboxBackend, standin: ModalStandin
) -> None:
    info = await backend.create(SandboxSpec())
    assert (await (await backend.exec(info.id, ["true"])).wait()).exit_code == 0
    await standin.lose_worker(info.id)  # Modal has noticed: the sandbox reads as failed
    with pytest.raises(SandboxTerminated):
        await asyncio.wait_for(backend.exec(info.id, ["true"]), 60)


async def test_exec_start_to_a_lost_worker_is_bounded(standin: ModalStandin) -> None:
    """A replica connecting afresh to a worker that is gone before Modal noticed: the SDK
    would reconnect for ~5 minutes; the start is bounded and reads as BackendUnavailable
    (Modal still says "running"), then as SandboxTerminated once Modal reports the end."""
    creator = ModalSandboxBackend(token_id=standin.token_id, token_secret=standin.token_secret)
    other = ModalSandboxBackend(
        token_id=standin.token_id,
        token_secret=standin.token_secret,
        options=ModalOptions(exec_start_timeout_s=2),
    )
    await creator.start()
    await other.start()
    try:
        info = await creator.create(SandboxSpec())
        await standin.lose_worker(info.id, report=False)
        assert (await other.attach(info.id)).status is SandboxStatus.RUNNING
        started = time.monotonic()
        with pytest.raises(BackendUnavailable):
            await other.exec(info.id, ["true"])
        assert time.monotonic() - started < 10
        standin.sandbox(info.id).finish(
            api_pb2.GenericResult.GENERIC_STATUS_FAILURE, exception="worker lost"
        )
        with pytest.raises(SandboxTerminated):
            await asyncio.wait_for(other.exec(info.id, ["true"]), 30)
    finally:
        await other.aclose()
        await creator.aclose()


async def test_write_to_a_closed_stdin_is_not_sandbox_terminated(
    backend: ModalSandboxBackend,
) -> None:
    info = await backend.create(SandboxSpec())
    handle = await backend.exec(info.id, ["sh", "-c", "exec 0<&-; echo closed; sleep 10"])
    async for chunk in handle.output():
        assert chunk.data == b"closed\n"
        break
    try:
        await handle.write_stdin(b"nobody reads this\n")
    except SandboxTerminated:
        raise
    except SandboxError:
        pass  # any other error is fine: the sandbox is still running
    assert await backend.status(info.id) is SandboxStatus.RUNNING
    await backend.terminate(info.id)


async def test_standin_as_a_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """The form two API replicas share: the stand-in in its own process."""
    with standin_process() as env:
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        replicas = [
            ModalSandboxBackend(
                token_id=env["MODAL_TOKEN_ID"], token_secret=env["MODAL_TOKEN_SECRET"]
            )
            for _ in range(2)
        ]
        for replica in replicas:
            await replica.start()
        try:
            info = await replicas[0].create(SandboxSpec())
            assert (await replicas[1].attach(info.id)).status is SandboxStatus.RUNNING
            handle = await replicas[1].exec(info.id, ["echo", "from B"])
            assert await _collect(handle) == (b"from B\n", b"")
            await replicas[0].terminate(info.id)
            assert await replicas[1].status(info.id) is SandboxStatus.TERMINATED
        finally:
            for replica in replicas:
                await replica.aclose()


async def test_roles_run_unprivileged_and_apart(backend: ModalSandboxBackend) -> None:
    """Item 7: in a root container, the candidate is not root and cannot read the agent's env.

    The stand-in's container root can really change uid (``modal_standin.userns``
    maps 65536 uids), so each check here would pass for root: ``id -u`` would
    be 0 and root reads any ``/proc/<pid>/environ``.
    """
    info = await backend.create(SandboxSpec())
    root = await backend.exec(info.id, ["sh", "-c", "true"], private=True)
    assert (await root.wait()).exit_code == 0  # private runs start as root (their launcher)

    # The agent's role: the command granted network, holding its API token.
    agent = await backend.exec(
        info.id,
        ["sh", "-c", "id -u > /tmp/agent.uid; echo $$ > /tmp/agent.pid; exec sleep 60"],
        env={"ANTHROPIC_API_KEY": "sk-agent-secret"},
        network=NetworkPolicy(allow_hosts=("127.0.0.1",)),
    )
    probe = (
        "while [ ! -s /tmp/agent.pid ]; do sleep 0.05; done; "
        'echo "uid=$(id -u) agent=$(cat /tmp/agent.uid)"; '
        "if cat /proc/$(cat /tmp/agent.pid)/environ; then echo READ; else echo DENIED; fi"
    )
    candidate = await backend.exec(info.id, ["sh", "-c", probe])
    out, err = await _collect(candidate)
    assert (await candidate.wait()).exit_code == 0
    assert b"uid=1000 agent=1001" in out, (out, err)
    assert b"DENIED" in out, (out, err)
    assert b"sk-agent-secret" not in out + err

    # The candidate's terminal is unprivileged too.
    term = await backend.open_pty(info.id, command=["sh"])
    await term.write(b"echo u=$(id -u)g=$(id -g); exit\n")
    seen = bytearray()
    async for data in term.output():
        seen.extend(data)
    assert b"u=1000g=1000" in seen

    # Files the API writes (as root, through Modal's filesystem API) stay editable.
    await backend.mkdir(info.id, "src/pkg")
    await backend.write_file(info.id, "src/pkg/main.py", b"print(1)\n")
    edit = await backend.exec(
        info.id,
        [
            "sh",
            "-c",
            "echo 'print(2)' >> src/pkg/main.py && touch src/pkg/new.py && "
            "stat -c '%u:%g' src/pkg/main.py src/pkg /workspace",
        ],
        cwd="/workspace",
    )
    out, err = await _collect(edit)
    assert (await edit.wait()).exit_code == 0, (out, err)
    assert out.split() == [b"1000:1000"] * 3
    assert await backend.read_file(info.id, "src/pkg/main.py") == b"print(1)\nprint(2)\n"
    await agent.kill()
    await backend.terminate(info.id)
