"""One event batch is rendered once for every watcher asking the same thing, never across
differing visibility: staff watchers share a result, a candidate gets its own."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from starlette.applications import Starlette

from gql.context import Context
from gql.schema import build_schema
from resolvers.event_kinds import FileWritten, NoteAdded
from tests.conftest import Account

QUERY = """subscription($s: ID!, $a: Int!) { sessionEvents(sessionId: $s, afterSeq: $a) {
  lastSeq events { seq type ... on NoteEvent { text } } } }"""


async def subscribe(app: Starlette, token: str, session_id: str, after: int) -> Any:
    context = Context(
        services=app.state.services,
        request=None,  # type: ignore[arg-type]  # not needed by subscriptions
        authorization=f"Bearer {token}",
    )
    return await build_schema().subscribe(
        QUERY, variable_values={"s": session_id, "a": after}, context_value=context
    )


async def test_staff_watchers_share_one_rendering(app: Starlette, account: Account) -> None:
    services = app.state.services
    sid = account["sessionId"]
    last = await services.log.last_seq(uuid.UUID(sid))
    streams = [
        await subscribe(app, account["interviewerToken"], sid, last),
        await subscribe(app, account["atsToken"], sid, last),
        await subscribe(app, account["candidateToken"], sid, last),
    ]
    # Every watcher is registered with the hub once it has received a first event.
    first = [asyncio.ensure_future(anext(s)) for s in streams]
    await services.log.append(uuid.UUID(sid), FileWritten("warm-up", size=1))
    await asyncio.wait_for(asyncio.gather(*first), 10)
    waiting = [asyncio.ensure_future(anext(s)) for s in streams]
    await services.log.append_many(uuid.UUID(sid), [NoteAdded("t1"), FileWritten("a", size=1)])
    staff_a, staff_b, candidate = await asyncio.wait_for(asyncio.gather(*waiting), 10)
    for stream in streams:
        await stream.aclose()
    assert staff_a.data == staff_b.data
    assert staff_a.data is staff_b.data  # rendered once
    events = staff_a.data["sessionEvents"]["events"]
    assert [e["type"] for e in events] == ["note.added", "file.written"]
    assert candidate.data is not staff_a.data
    assert [e["type"] for e in candidate.data["sessionEvents"]["events"]] == ["file.written"]
