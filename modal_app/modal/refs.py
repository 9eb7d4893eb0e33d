"""What one API replica knows about Modal sandboxes, and how it reaches them.

``SandboxRefs`` maps sandbox ids to ``SandboxRef``s: the SDK handle plus what
was read from the sandbox's tags (workspace volume, limits, creation time).
The cache only saves round trips; any id is (re)attached with
``Sandbox.from_id``, because sandboxes are shared by every replica.

It also owns the calls every other part makes on a live sandbox: the error
context ``on_sandbox``, the small ``helper`` commands, and the per-command
network widening.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field

import modal
import modal.exception as mx
from modal.stream_type import StreamType

from modal_app.base import (
    BackendUnavailable,
    InvalidSpec,
    Limits,
    NetworkPolicy,
    SandboxError,
    SandboxFileError,
    SandboxNotFound,
    SandboxStatus,
    SandboxTerminated,
)
from modal_app.logged import suppressed
from modal_app.modal.errors import translate_errors
from modal_app.modal.process import ProcessContext
from modal_app.modal.spec import (
    TAG_CREATED,
    TAG_LIMITS,
    TAG_VOLUME,
    decode_limits,
    split_allow_hosts,
)

# Every Modal sandbox id (V1 and V2) has the "sb-" type prefix; anything else
# (a local backend's id, junk) is refused without a round trip.
_SANDBOX_ID = re.compile(r"^sb-[A-Za-z0-9_.-]{1,100}$")
HELPER_TIMEOUT_S = 30
MAX_REFS = 1000
"""Past this many cached references, those of ended sandboxes are dropped."""
_log = logging.getLogger(__name__)
# Exit codes of a sandbox's entrypoint that mean "ended normally": our sleep
# finishing, Modal's timeout (124) and termination (137 / 143).
_ORDERLY_EXITS = frozenset({0, 124, 137, 143})
# Errors (exact types) that may mean "the sandbox has ended" (see on_sandbox).
_MAYBE_ENDED = (SandboxNotFound, SandboxFileError, SandboxError, BackendUnavailable)


async def _detach(sandbox: modal.Sandbox) -> None:
    """Close this client's connection to a sandbox's worker (the sandbox runs on)."""
    with suppressed(
        _log,
        f"detaching a handle of sandbox {sandbox.object_id}",
        safe_because="only a connection is left open until the client closes",
        level=logging.DEBUG,
    ):
        await sandbox.detach.aio()  # type: ignore[no-untyped-call]  # unannotated in 1.6.4


def status_from_returncode(returncode: int | None) -> SandboxStatus:
    if returncode is None:
        return SandboxStatus.RUNNING
    return SandboxStatus.TERMINATED if returncode in _ORDERLY_EXITS else SandboxStatus.ERROR


@dataclass(eq=False)
class SandboxRef:
    sandbox: modal.Sandbox
    tags: dict[str, str]
    created_at: float
    volume_name: str | None
    limits: Limits | None
    network: NetworkPolicy | None = None
    """The creation policy, known only to the replica that created the sandbox."""
    ended: bool = False
    """Known to have ended (or been terminated by this replica)."""
    ended_event: asyncio.Event = field(default_factory=asyncio.Event)
    settled: bool = False
    """Modal has confirmed the end, so the volume holds the final files."""
    widenings: list[tuple[list[str], list[str]]] = field(default_factory=list)
    net_lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def __post_init__(self) -> None:
        if self.ended:
            self.ended_event.set()

    @property
    def id(self) -> str:
        return self.sandbox.object_id

    def mark_ended(self) -> None:
        self.ended = True
        self.ended_event.set()

    async def settle(self, timeout_s: float = 30) -> None:
        """Wait (bounded) until Modal reports the sandbox finished."""
        if self.settled:
            return
        with suppressed(
            _log,
            f"waiting for Modal to report sandbox {self.id} finished",
            safe_because="it was told to terminate; Modal ends it without us",
            level=logging.DEBUG,
        ):
            async with asyncio.timeout(timeout_s):
                await self.sandbox.wait.aio(raise_on_termination=False)
                self.settled = True


class SandboxRefs:
    def __init__(
        self, client: Callable[[], modal.Client], *, start_timeout_s: float = 120.0
    ) -> None:
        self._client = client
        self._refs: dict[str, SandboxRef] = {}
        self._start_timeout_s = start_timeout_s

    def clear(self) -> None:
        self._refs.clear()

    def add(self, ref: SandboxRef) -> None:
        self._refs[ref.id] = ref
        if len(self._refs) > MAX_REFS:
            self._drop_ended()

    async def forget(self, sandbox_id: str) -> None:
        """Drop (and detach) the reference to a sandbox that is gone for good (removed)."""
        ref = self._refs.pop(sandbox_id, None)
        if ref is not None:
            await _detach(ref.sandbox)

    def _drop_ended(self) -> None:
        # Ended sandboxes are re-attached by id if ever asked about again; their
        # handles need no detach (Modal closed their router connections).
        for sandbox_id in [i for i, ref in self._refs.items() if ref.ended]:
            del self._refs[sandbox_id]

    async def get(self, sandbox_id: str, *, refresh: bool = False) -> SandboxRef:
        ref = self._refs.get(sandbox_id)
        if ref is not None and not refresh:
            return ref
        client = self._client()
        if not _SANDBOX_ID.match(sandbox_id):
            raise SandboxNotFound(f"no Modal sandbox {sandbox_id!r}")
        try:
            with translate_errors():
                sandbox = await modal.Sandbox.from_id.aio(sandbox_id, client=client)
        except InvalidSpec as exc:
            raise SandboxNotFound(f"no Modal sandbox {sandbox_id!r}") from exc
        return await self.adopt(sandbox)

    async def running(self, sandbox_id: str) -> SandboxRef:
        ref = await self.get(sandbox_id)
        if ref.ended:
            raise SandboxTerminated(f"sandbox {sandbox_id} has ended")
        return ref

    async def adopt(self, sandbox: modal.Sandbox) -> SandboxRef:
        """A reference for a handle from ``from_id`` / ``list``, read from the sandbox's tags.

        A sandbox already known keeps its handle (commands started with it use
        it, and it holds the router connection); the fresh one is detached, so
        re-attaching never leaves connections behind.
        """
        tags: dict[str, str] = {}
        with contextlib.suppress(mx.Error):
            tags = await sandbox.get_tags.aio()
        known = self._refs.get(sandbox.object_id)
        ended = sandbox.returncode is not None or (known is not None and known.ended)
        if known is not None and known.sandbox is not sandbox:
            await _detach(sandbox)
            sandbox = known.sandbox
        created = tags.get(TAG_CREATED, "")
        ref = SandboxRef(
            sandbox=sandbox,
            tags=tags,
            created_at=float(created) if created.isdigit() else 0.0,
            volume_name=tags.get(TAG_VOLUME) or (known.volume_name if known else None),
            limits=decode_limits(tags.get(TAG_LIMITS)) or (known.limits if known else None),
            network=known.network if known else None,
            ended=ended,
        )
        if known is not None:
            ref.widenings = known.widenings
            ref.net_lock = known.net_lock
            ref.ended_event = known.ended_event
            ref.settled = known.settled
            if ref.ended:
                ref.ended_event.set()
        self.add(ref)
        return ref

    async def adopt_all(self, sandboxes: Sequence[modal.Sandbox]) -> list[SandboxRef]:
        """``adopt`` a listing, 16 at a time; a sandbox gone meanwhile is left out."""
        limit = asyncio.Semaphore(16)

        async def describe(sandbox: modal.Sandbox) -> SandboxRef | None:
            async with limit:
                with contextlib.suppress(SandboxNotFound, SandboxTerminated):
                    return await self.adopt(sandbox)
            return None

        refs = await asyncio.gather(*(describe(sandbox) for sandbox in sandboxes))
        return [ref for ref in refs if ref is not None]

    @contextlib.asynccontextmanager
    async def on_sandbox(self, ref: SandboxRef) -> AsyncIterator[None]:
        """``translate_errors`` for calls on an existing sandbox, which may have ended.

        The SDK reports a call on a finished sandbox as "not found", a failed
        precondition ("Sandbox already finished": plain ``SandboxError``), an
        unspecific filesystem error or, when its worker is gone, a connection
        error (``BackendUnavailable``, which would trip the breaker for every
        session); a poll of the control plane tells which.
        """
        try:
            with translate_errors():
                yield
        except SandboxError as exc:
            if type(exc) in _MAYBE_ENDED and await self.finished(ref):
                raise SandboxTerminated(f"sandbox {ref.id} has ended") from exc
            raise

    @contextlib.asynccontextmanager
    async def starting(self, ref: SandboxRef) -> AsyncIterator[None]:
        """``on_sandbox`` for starting a command, bounded (``ModalOptions.exec_start_timeout_s``).

        Past the bound the builtin TimeoutError reads as BackendUnavailable, or
        SandboxTerminated when a poll shows the sandbox ended.
        """
        async with self.on_sandbox(ref), asyncio.timeout(self._start_timeout_s):
            yield

    async def finished(self, ref: SandboxRef) -> bool:
        try:
            ended = await ref.sandbox.poll.aio() is not None
        except Exception as exc:
            _log.debug("polling sandbox %s failed (%r): taken as running", ref.id, exc)
            return False
        if ended:
            ref.mark_ended()
            ref.settled = True
        return ended

    async def poll_status(self, ref: SandboxRef) -> SandboxStatus:
        with translate_errors():
            returncode = await ref.sandbox.poll.aio()
        if returncode is not None:
            ref.mark_ended()
            ref.settled = True
        elif ref.ended:
            # Terminated by us and still shutting down: nothing runs in it any more.
            return SandboxStatus.TERMINATED
        return status_from_returncode(returncode)

    def context(self, ref: SandboxRef) -> ProcessContext:
        return ProcessContext(
            helper=lambda argv: self.helper(ref, argv),
            sandbox_ended=lambda: self.finished(ref),
            ended=ref.ended_event,
        )

    async def helper(self, ref: SandboxRef, argv: Sequence[str]) -> int:
        """Run a short helper command next to the candidate's and return its exit code."""
        async with self.starting(ref):
            process = await ref.sandbox.exec.aio(
                *argv,
                timeout=HELPER_TIMEOUT_S,
                stdout=StreamType.DEVNULL,
                stderr=StreamType.DEVNULL,
                text=False,
            )
        async with self.on_sandbox(ref):
            return await process.wait.aio()

    async def widen(self, ref: SandboxRef, policy: NetworkPolicy) -> Callable[[], Awaitable[None]]:
        """Allow ``policy``'s hosts on the whole sandbox until the returned release runs."""
        grant = split_allow_hosts(policy)
        async with ref.net_lock:
            ref.widenings.append(grant)
            try:
                await self._apply_network(ref)
            except BaseException:
                ref.widenings.remove(grant)
                raise
        released = False

        async def release() -> None:
            nonlocal released
            if released:
                return
            released = True
            async with ref.net_lock:
                ref.widenings.remove(grant)
                await self._apply_network(ref)

        return release

    async def _apply_network(self, ref: SandboxRef) -> None:
        cidrs: list[str] = []
        domains: list[str] = []
        if ref.network is not None and not ref.network.blocked:
            cidrs, domains = split_allow_hosts(ref.network)
        for extra_cidrs, extra_domains in ref.widenings:
            cidrs += extra_cidrs
            domains += extra_domains
        # Both lists given (even empty) means an allowlist; the SDK has no way
        # back to "blocked" for a running sandbox other than allowing nothing.
        async with self.on_sandbox(ref):
            await ref.sandbox._experimental_set_outbound_network_policy.aio(
                outbound_cidr_allowlist=sorted(set(cidrs)),
                outbound_domain_allowlist=sorted(set(domains)),
            )
