"""The server as deployed: uvicorn in its own process, real HTTP and WebSocket clients."""

from __future__ import annotations

import json

import httpx
import pytest
import websockets
from websockets.exceptions import ConnectionClosed

from tests.conftest import Account
from tests.server import ServerProcess


async def test_healthz_and_viewer_over_real_http(
    live_server: ServerProcess, account: Account
) -> None:
    async with httpx.AsyncClient(base_url=live_server.url) as http:
        health = await http.get("/healthz")
        assert health.status_code == 200
        assert health.json() == {"status": "ok", "database": "ok", "bus": "ok"}
        response = await http.post(
            "/graphql",
            json={"query": "{ viewer { __typename kind } }"},
            headers={"authorization": f"Bearer {account['interviewerToken']}"},
        )
        assert response.status_code == 200
        assert response.json() == {
            "data": {"viewer": {"__typename": "Viewer", "kind": "INTERVIEWER"}}
        }


async def _init(
    live_server: ServerProcess, protocol: str, payload: dict[str, str]
) -> dict[str, object]:
    async with websockets.connect(live_server.ws_url, subprotocols=[protocol]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": payload}))
        return json.loads(await ws.recv())


@pytest.mark.parametrize("protocol", ["graphql-transport-ws", "graphql-ws"])
async def test_websocket_accepts_a_valid_token(
    live_server: ServerProcess, account: Account, protocol: str
) -> None:
    message = await _init(
        live_server, protocol, {"authorization": f"Bearer {account['candidateToken']}"}
    )
    assert message["type"] == "connection_ack"


@pytest.mark.parametrize(
    "payload", [{}, {"authorization": "Bearer ilmi_wrong"}, {"authorization": "x"}]
)
async def test_websocket_rejects_bad_tokens_with_4403(
    live_server: ServerProcess, payload: dict[str, str]
) -> None:
    with pytest.raises(ConnectionClosed) as closed:
        await _init(live_server, "graphql-transport-ws", payload)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4403


async def test_legacy_protocol_reports_rejection(live_server: ServerProcess) -> None:
    async with websockets.connect(live_server.ws_url, subprotocols=["graphql-ws"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps({"type": "connection_init", "payload": {}}))
        message = json.loads(await ws.recv())
        assert message["type"] == "connection_error"


async def test_cross_origin_websockets_are_refused(live_server: ServerProcess) -> None:
    # Browsers send Origin on WebSocket handshakes and apply no CORS to them: an
    # origin not in CORS_ORIGINS (none here) must not get a socket.
    with pytest.raises(websockets.exceptions.InvalidStatus) as refused:
        async with websockets.connect(
            live_server.ws_url,
            subprotocols=["graphql-transport-ws"],  # type: ignore[list-item]
            origin="https://evil.example",  # type: ignore[arg-type]
        ):
            pass
    assert refused.value.response.status_code == 403
