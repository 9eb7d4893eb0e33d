"""The live path's metrics over the real app and a real graphql-transport-ws client: open
connections, running subscriptions by field, and fan-out lag (an event's ``at`` -> sent).

The app runs in this process (uvicorn on a free port, the test app's services), so the
process's metrics registry is the one its WebSocket handlers observe."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest
import uvicorn
from starlette.applications import Starlette

from resolvers import metrics
from resolvers.event_kinds import NoteAdded
from tests.conftest import Account
from tests.server import free_port
from tests.support import wait_until
from tests.wsclient import SESSION_EVENTS, GraphQLWS


@pytest.fixture
async def ws_url(app: Starlette) -> AsyncIterator[str]:
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            app,
            host="127.0.0.1",
            port=port,
            log_level="warning",
            lifespan="off",
            ws="websockets-sansio",
        )
    )
    task = asyncio.create_task(server.serve())
    await wait_until(lambda: server.started, what="uvicorn started")
    yield f"ws://127.0.0.1:{port}/graphql"
    server.should_exit = True
    await task


def sample(name: str, **labels: str) -> float:
    return metrics.REGISTRY.get_sample_value(name, labels) or 0.0


async def test_a_subscription_counts_while_it_runs_and_its_deliveries_are_timed(
    app: Starlette, account: Account, ws_url: str
) -> None:
    connections = sample("interviewlm_websocket_connections")
    running = sample("interviewlm_subscriptions", field="sessionEvents")
    lags = sample("interviewlm_fanout_lag_seconds_count")
    sid = uuid.UUID(account["sessionId"])
    log = app.state.services.log
    after = await log.last_seq(sid)

    client = await GraphQLWS.connect(ws_url, account["interviewerToken"])
    try:
        assert sample("interviewlm_websocket_connections") == connections + 1
        await client.subscribe(SESSION_EVENTS, {"s": account["sessionId"], "a": after})
        await wait_until(
            lambda: sample("interviewlm_subscriptions", field="sessionEvents") == running + 1,
            what="the subscription counted",
        )
        live = app.state.services.live
        await wait_until(lambda: sid in live._hubs, what="watching live")
        for text in ("one", "two"):
            record = await log.append(sid, NoteAdded(text=text))
            message = await client.next_message()
            assert message["payload"]["data"]["sessionEvents"]["lastSeq"] == record.seq
        # Each delivered live batch is timed once it has been sent (the first for sure
        # once the second went out: the subscription is resumed after each send).
        await wait_until(lambda: sample("interviewlm_fanout_lag_seconds_count") >= lags + 1)
    finally:
        await client.close()
    await wait_until(
        lambda: sample("interviewlm_subscriptions", field="sessionEvents") == running,
        what="the subscription's end counted",
    )
    await wait_until(
        lambda: sample("interviewlm_websocket_connections") == connections,
        what="the connection's end counted",
    )
