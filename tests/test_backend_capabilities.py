"""Resolvers act on what a backend declares, not on its name (``modal_app.base`` capabilities).

The backend is the real local one; only its declared capability is changed
on the instance, to show the reaper follows the declaration.  Before, the
reaper tested ``backend.name == "local"`` and would have ended the sandbox
below whatever the backend declared.
"""

from __future__ import annotations

import socket

import pytest
from starlette.applications import Starlette

from models.sandbox import SandboxRecord, SandboxState
from resolvers.reaper import reconcile
from tests.conftest import Account
from tests.support import Api
from tests.workspace_support import start


async def test_reconcile_follows_shares_sandboxes_across_replicas(
    app: Starlette, api: Api, account: Account, monkeypatch: pytest.MonkeyPatch
) -> None:
    sandboxes = app.state.services.sandboxes
    assert sandboxes.backend.shares_sandboxes_across_replicas is False
    await start(api, account)
    # Its owner is a process of this host that no longer exists.
    dead_owner = f"{socket.gethostname()}:999999999"
    await SandboxRecord.filter(session_id=account["sessionId"]).update(owner=dead_owner)

    # Declared shared: the sandbox outlived its owner; the backend says it runs, so it is kept.
    monkeypatch.setattr(sandboxes.backend, "shares_sandboxes_across_replicas", True)
    await reconcile(sandboxes)
    record = await SandboxRecord.get(session_id=account["sessionId"])
    assert record.state is SandboxState.RUNNING
    assert record.owner == sandboxes.owner  # adopted: this replica holds it now

    # Declared not shared (the local backend's truth): lost with its owner.
    await SandboxRecord.filter(session_id=account["sessionId"]).update(owner=dead_owner)
    monkeypatch.setattr(sandboxes.backend, "shares_sandboxes_across_replicas", False)
    await reconcile(sandboxes)
    record = await SandboxRecord.get(session_id=account["sessionId"])
    assert record.state is SandboxState.TERMINATED
    assert record.end_reason == "lost when its server restarted"
