"""Fixtures of the sandbox suites: real backends, no fakes.

``backend`` is a started backend, parametrized over ``BACKENDS``; the contract
suite (test_contract.py) runs once per entry.  Adding a backend is one entry
in that list; backends whose runtime is not available here are skipped with
the reason their ``skip_reason`` gives.

``modal-standin`` is the Modal backend (real modal SDK) against
``tests.modal_standin``, a protocol-level stand-in for Modal's API started
once per session in its own process: it needs no credentials and never
skips, so the Modal backend's client side is exercised in every CI run.  It
checks the client side only, not Modal's behaviour; ``modal`` (credential
gated, ``-m modal``) is the run against real Modal.

Sandbox roots are made with ``tempfile`` rather than ``tmp_path``: pytest
creates its temporary directories 0700 (and resets
``/tmp/pytest-of-<user>`` to 0700 at every session start, including other
people's concurrent sessions), while bwrap resolves bind sources as the
sandbox's unprivileged uid, which must be able to traverse every ancestor.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from modal_app.base import SandboxBackend, SandboxInfo, SandboxSpec


@dataclass(frozen=True)
class BackendFactory:
    name: str
    make: Callable[[Path], SandboxBackend]
    """Build an (unstarted) backend; the path is a fresh root it may use for state."""
    skip_reason: Callable[[], str | None] = lambda: None
    marks: tuple[pytest.MarkDecorator, ...] = field(default=())
    environment: str | None = None
    """A session fixture yielding variables for ``os.environ`` while this backend's tests run."""


def _local(root: Path) -> SandboxBackend:
    from modal_app.local.backend import LocalSandboxBackend

    return LocalSandboxBackend(root)


def _local_skip() -> str | None:
    if os.geteuid() != 0:
        return "the local backend needs root (it runs each sandbox as its own uid)"
    if shutil.which("bwrap") is None:
        return "bubblewrap is not installed (run scripts/setup)"
    return None


def _modal(root: Path) -> SandboxBackend:
    del root  # Modal keeps its state remotely
    from modal_app.modal.backend import ModalSandboxBackend

    return ModalSandboxBackend(
        token_id=os.environ.get("MODAL_TOKEN_ID"),
        token_secret=os.environ.get("MODAL_TOKEN_SECRET"),
    )


def _modal_skip() -> str | None:
    if os.environ.get("MODAL_TOKEN_ID") and os.environ.get("MODAL_TOKEN_SECRET"):
        return None
    return "Modal credentials not set (MODAL_TOKEN_ID and MODAL_TOKEN_SECRET)"


BACKENDS: list[BackendFactory] = [
    BackendFactory("local", _local, _local_skip),
    # Same preconditions as "local": the stand-in's sandboxes are bubblewrap containers.
    BackendFactory("modal-standin", _modal, _local_skip, environment="modal_standin_env"),
    BackendFactory("modal", _modal, _modal_skip, (pytest.mark.modal,)),
]


@contextlib.contextmanager
def environment_set(values: dict[str, str]) -> Iterator[None]:
    """Set ``values`` in ``os.environ`` (the SDK reads MODAL_SERVER_URL there), then restore."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def modal_standin_env() -> Iterator[dict[str, str]]:
    """One stand-in for Modal's API per session (MODAL_SERVER_URL and tokens for the SDK).

    In its own process, so the SDK's clients and event loops stay apart from
    the stand-in's servers, as they would be from Modal.  Not set in
    ``os.environ`` for the whole session: a run with real credentials must
    reach real Modal in the "modal" entry.
    """
    reason = _local_skip()
    if reason:
        pytest.skip(reason)
    from tests.modal_standin.process import standin_process

    with standin_process() as env:
        yield env


def make_root() -> Path:
    """A sandbox root the sandbox uids can traverse (see the module docstring)."""
    root = Path(tempfile.mkdtemp(prefix="ilm-sandbox-tests-"))
    root.chmod(0o711)
    return root / "sandboxes"


@pytest.fixture
def sandbox_root() -> Iterator[Path]:
    root = make_root()
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


@pytest.fixture(
    scope="session",
    params=[pytest.param(f, id=f.name, marks=f.marks) for f in BACKENDS],
)
def backend_factory(request: pytest.FixtureRequest) -> Iterator[BackendFactory]:
    factory: BackendFactory = request.param
    reason = factory.skip_reason()
    if reason:
        pytest.skip(reason)
    if factory.environment is None:
        yield factory
        return
    env: dict[str, str] = request.getfixturevalue(factory.environment)
    with environment_set(env):
        yield factory


@pytest.fixture(scope="session")
def backend_root(backend_factory: BackendFactory) -> Iterator[Path]:
    root = make_root()
    yield root
    shutil.rmtree(root.parent, ignore_errors=True)


@pytest.fixture(scope="session")
async def backend(backend_factory: BackendFactory, backend_root: Path) -> AsyncIterator[Any]:
    """A started backend shared by the session (per backend kind)."""
    instance = backend_factory.make(backend_root)
    await instance.start()
    yield instance
    await instance.aclose()


@pytest.fixture
async def fresh_backend(
    backend_factory: BackendFactory, backend_root: Path
) -> AsyncIterator[Callable[[], Awaitable[SandboxBackend]]]:
    """Start further instances over the same state, as a restarted server would."""
    started: list[SandboxBackend] = []

    async def make() -> SandboxBackend:
        instance = backend_factory.make(backend_root)
        await instance.start()
        started.append(instance)
        return instance

    yield make
    for instance in started:
        await instance.aclose()


SandboxMaker = Callable[..., Awaitable[SandboxInfo]]


@pytest.fixture
async def make_sandbox(backend: SandboxBackend) -> AsyncIterator[SandboxMaker]:
    """Create sandboxes that are terminated when the test ends."""
    created: list[str] = []

    async def make(spec: SandboxSpec | None = None, **kwargs: Any) -> SandboxInfo:
        info = await backend.create(spec or SandboxSpec(**kwargs))
        created.append(info.id)
        return info

    yield make
    for sandbox_id in created:
        await backend.terminate(sandbox_id)


@pytest.fixture
async def sandbox(make_sandbox: SandboxMaker) -> SandboxInfo:
    """One default sandbox (no language preset)."""
    return await make_sandbox()
