"""What the stand-in remembers (sandboxes, volumes), its ids and tokens, and its faults."""

from __future__ import annotations

import asyncio
import base64
import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from grpclib import GRPCError, Status
from modal_proto import api_pb2

from tests.modal_standin.container import Container


def mint_id(prefix: str) -> str:
    """An object id with Modal's type prefix.

    Sandbox ids must NOT look like V1 ids (``sb-`` + 22 base62 characters,
    ``modal/sandbox/_common.py::_is_v1_sandbox_id``): the SDK picks its V1 or
    V2 RPCs from the id's shape, so a V1-shaped id would send ``from_id``,
    ``poll`` and ``terminate`` to ``SandboxWait``/``SandboxTerminate``
    instead of the ``*V2`` RPCs.  The hyphenated 24-character body cannot be
    mistaken for V1.
    """
    body = secrets.token_hex(12)
    return f"{prefix}-{body[:8]}-{body[8:]}"


def mint_task_id() -> str:
    """Task ids of V2 sandboxes end in ``V`` (``_task_command_router_client._is_v2_task_id``)."""
    return f"ta-{secrets.token_hex(10)}V"


def unsigned_jwt(claims: dict[str, object]) -> str:
    """A JWT the SDK can decode (it reads ``exp`` without checking a signature)."""

    def part(data: dict[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'none', 'typ': 'JWT'})}.{part(claims)}.standin"


@dataclass
class Faults:
    """Switches tests flip to make the stand-in misbehave like Modal can.

    * ``unavailable``: RPC names (control plane or command router; ``"*"`` for
      all) answered with UNAVAILABLE -- the SDK retries, then raises.
    * ``delay_s``: RPC name -> seconds to stall before answering (deadlines,
      client timeouts).
    * ``fail``: RPC name -> (grpclib Status, message) answered instead.
    * ``replaceable_blocked_network``: let ``TaskSetNetworkAccess`` replace the
      policy of a sandbox created with ``block_network=True`` (by default the
      stand-in refuses, holding us to what the SDK documents).
    Per sandbox: ``StandinSandbox.worker_gone`` (see ``ModalStandin.lose_worker``).
    """

    unavailable: set[str] = field(default_factory=set)
    delay_s: dict[str, float] = field(default_factory=dict)
    fail: dict[str, tuple[Status, str]] = field(default_factory=dict)
    replaceable_blocked_network: bool = False
    result_after_commit: bool = False
    """Publish a sandbox's result only after its volume commit (see ``end_sandbox``)."""
    commit_delay_s: float = 0.0
    """How long a volume commit takes (a large workspace)."""
    router_calls: list[str] = field(default_factory=list)
    """Command router RPCs received (all sandboxes), in order."""

    async def apply(self, rpc: str) -> None:
        delay = self.delay_s.get(rpc, self.delay_s.get("*", 0.0))
        if delay:
            await asyncio.sleep(delay)
        if rpc in self.unavailable or "*" in self.unavailable:
            raise GRPCError(Status.UNAVAILABLE, f"stand-in: {rpc} is unavailable (fault injected)")
        if rpc in self.fail:
            status, message = self.fail[rpc]
            raise GRPCError(status, message)


@dataclass
class Volume:
    volume_id: str
    name: str
    environment: str
    path: Path


@dataclass
class StandinSandbox:
    sandbox_id: str
    task_id: str
    app_id: str
    definition: api_pb2.Sandbox
    tags: dict[str, str]
    env: dict[str, str]
    created_at: float = field(default_factory=time.time)
    container: Container | None = None
    router_url: str = ""
    router_jwt: str = ""
    result: api_pb2.GenericResult | None = None
    finished: asyncio.Event = field(default_factory=asyncio.Event)
    worker_gone: bool = False
    network: api_pb2.NetworkAccess | None = None
    workspace: Path | None = None
    """The container's working copy of its /workspace volume (committed at the end)."""
    workspace_volume: str | None = None
    network_changes: list[api_pb2.NetworkAccess] = field(default_factory=list)

    def finish(self, status: int, *, exitcode: int = 0, exception: str = "") -> None:
        if self.result is not None:
            return
        self.result = api_pb2.GenericResult(status=status, exitcode=exitcode, exception=exception)
        self.finished.set()
