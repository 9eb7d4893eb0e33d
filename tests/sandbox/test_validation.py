"""Both backends refuse the same bad input with the same InvalidSpec (``modal_app.base`` checks).

The local backend is the real one (started, with a real sandbox).  The Modal
backend is the real class, unstarted and without credentials: it checks its
arguments before any call to Modal, so a refusal here is exactly what a
caller gets in production, and reaching Modal would show up as
BackendUnavailable instead.  Before, the backends differed: the local one ran
a command with an infinite timeout and created sandboxes that never expire,
and accepted environment names like ``1X``; Modal ignored a 0x0 resize.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from modal_app.base import (
    MAX_TERMINAL_DIMENSION,
    InvalidSpec,
    Limits,
    SandboxBackend,
    SandboxSpec,
    check_terminal_size,
    run,
)
from modal_app.local.backend import LocalSandboxBackend
from modal_app.modal.backend import ModalSandboxBackend
from tests.sandbox.conftest import _local_skip, make_root

pytestmark = pytest.mark.timeout(60)


@dataclass
class Pair:
    local: LocalSandboxBackend
    modal: ModalSandboxBackend
    sandbox_id: str

    @property
    def backends(self) -> list[SandboxBackend]:
        return [self.local, self.modal]


@pytest.fixture(scope="module")
async def pair() -> AsyncIterator[Pair]:
    reason = _local_skip()
    if reason:
        pytest.skip(reason)
    root = make_root()
    local = LocalSandboxBackend(root)
    await local.start()
    info = await local.create(SandboxSpec())
    try:
        yield Pair(local, ModalSandboxBackend(token_id=None, token_secret=None), info.id)
    finally:
        await local.remove(info.id)
        await local.aclose()


async def refusals(pair: Pair, call: Callable[[SandboxBackend], Awaitable[Any]]) -> list[str]:
    """The InvalidSpec message of each backend (a failure if one accepts or fails otherwise)."""
    messages = []
    for backend in pair.backends:
        with pytest.raises(InvalidSpec) as refused:
            await call(backend)
        messages.append(str(refused.value))
    return messages


BAD_EXEC: list[tuple[str, dict[str, Any]]] = [
    ("empty argv", {"command": []}),
    ("empty program", {"command": [""]}),
    ("not strings", {"command": ["echo", 1]}),
    ("NUL in argv", {"command": ["echo", "a\x00b"]}),
    ("NUL in a shell line", {"command": "echo a\x00b"}),
    ("zero timeout", {"timeout_s": 0}),
    ("negative timeout", {"timeout_s": -1.0}),
    ("infinite timeout", {"timeout_s": math.inf}),
    ("NaN timeout", {"timeout_s": math.nan}),
    ("env name with =", {"env": {"A=B": "x"}}),
    ("env name with a digit first", {"env": {"1X": "x"}}),
    ("env name with a dash", {"env": {"A-B": "x"}}),
    ("NUL in an env value", {"env": {"X": "a\x00b"}}),
]


@pytest.mark.parametrize(("what", "bad"), BAD_EXEC, ids=[w for w, _ in BAD_EXEC])
async def test_exec_refusals_are_the_same(pair: Pair, what: str, bad: dict[str, Any]) -> None:
    del what
    args: dict[str, Any] = {"command": ["true"]} | bad
    command = args.pop("command")
    messages = await refusals(pair, lambda b: b.exec(pair.sandbox_id, command, **args))
    assert messages[0] == messages[1]


async def test_the_good_values_run_locally(pair: Pair) -> None:
    """Positive control: the inputs above fail for what is bad in them, not for the rest."""
    result = await run(
        pair.local, pair.sandbox_id, ["sh", "-c", 'echo "$X"'], env={"X": "ok"}, timeout_s=30
    )
    assert (result.exit_code, result.stdout) == (0, b"ok\n")
    pty = await pair.local.open_pty(pair.sandbox_id, cols=MAX_TERMINAL_DIMENSION, rows=1)
    await pty.resize(1, MAX_TERMINAL_DIMENSION)
    await pty.close()


BAD_PTY: list[tuple[str, dict[str, Any]]] = [
    ("zero columns", {"cols": 0}),
    ("zero rows", {"rows": 0}),
    ("negative", {"cols": -80}),
    ("too wide", {"cols": MAX_TERMINAL_DIMENSION + 1}),
    ("too tall", {"rows": 1 << 16}),
    ("empty command", {"command": []}),
    ("bad env", {"env": {"": "x"}}),
]


@pytest.mark.parametrize(("what", "bad"), BAD_PTY, ids=[w for w, _ in BAD_PTY])
async def test_terminal_refusals_are_the_same(pair: Pair, what: str, bad: dict[str, Any]) -> None:
    del what
    messages = await refusals(pair, lambda b: b.open_pty(pair.sandbox_id, **bad))
    assert messages[0] == messages[1]


async def test_a_bad_resize_is_refused_not_ignored(pair: Pair) -> None:
    """Local terminals refuse a 0x0 resize (Modal's ran the same ``check_terminal_size``)."""
    pty = await pair.local.open_pty(pair.sandbox_id)
    try:
        for cols, rows in [(0, 0), (80, 0), (MAX_TERMINAL_DIMENSION + 1, 24)]:
            with pytest.raises(InvalidSpec) as refused:
                await pty.resize(cols, rows)
            with pytest.raises(InvalidSpec) as direct:
                check_terminal_size(cols, rows)
            assert str(refused.value) == str(direct.value)
    finally:
        await pty.close()


BAD_SPECS: list[tuple[str, SandboxSpec]] = [
    ("infinite lifetime", SandboxSpec(timeout_s=math.inf)),
    ("zero lifetime", SandboxSpec(timeout_s=0)),
    ("infinite idle timeout", SandboxSpec(idle_timeout_s=math.inf)),
    ("negative idle timeout", SandboxSpec(idle_timeout_s=-5)),
    ("no CPU", SandboxSpec(limits=Limits(cpu=0))),
    ("tiny memory", SandboxSpec(limits=Limits(memory_mb=8))),
    ("no processes", SandboxSpec(limits=Limits(max_processes=0))),
    ("fractional files", SandboxSpec(limits=Limits(max_open_files=64.5))),  # type: ignore[arg-type]
    ("bad env name", SandboxSpec(env={"A B": "x"})),
    ("non-string tag", SandboxSpec(tags={"k": 1})),  # type: ignore[dict-item]
]


@pytest.mark.parametrize(("what", "spec"), BAD_SPECS, ids=[w for w, _ in BAD_SPECS])
async def test_spec_refusals_are_the_same(pair: Pair, what: str, spec: SandboxSpec) -> None:
    del what
    messages = await refusals(pair, lambda b: b.create(spec))
    assert messages[0] == messages[1]


def test_capabilities_are_declared() -> None:
    """What resolvers ask a backend instead of testing its name."""
    assert LocalSandboxBackend.shares_sandboxes_across_replicas is False
    assert LocalSandboxBackend.agent_proxy_route == "socket"
    assert ModalSandboxBackend.shares_sandboxes_across_replicas is True
    assert ModalSandboxBackend.agent_proxy_route == "egress"


async def test_a_bad_spec_is_refused_before_the_backend_is_needed() -> None:
    """Unstarted backends: the caller's error (InvalidSpec), not BackendUnavailable."""
    spec = SandboxSpec(timeout_s=math.inf)
    backends: list[SandboxBackend] = [
        LocalSandboxBackend(make_root()),
        ModalSandboxBackend(token_id=None, token_secret=None),
    ]
    messages = []
    for backend in backends:
        with pytest.raises(InvalidSpec) as refused:
            await backend.create(spec)
        messages.append(str(refused.value))
    assert messages[0] == messages[1]
