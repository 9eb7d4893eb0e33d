"""Reading a session's recording: its stored events, in seq order, page by page."""

from __future__ import annotations

from dataclasses import dataclass

from resolvers import validation as check
from resolvers.auth import Principal
from resolvers.events import MAX_READ, EventLog, EventRecord
from resolvers.sessions import get_session
from resolvers.visibility import visible


@dataclass(frozen=True, slots=True)
class RecordingPage:
    session_id: str
    events: list[EventRecord]
    last_seq: int
    has_more: bool


async def read_recording(
    principal: Principal, session_id: str, *, after_seq: int, first: int, log: EventLog
) -> RecordingPage:
    session = await get_session(principal, session_id)
    check.int_range("afterSeq", after_seq, low=0, high=2**62)
    check.int_range("first", first, low=1, high=MAX_READ)
    stored = await log.read(session.id, after_seq=after_seq, limit=first)
    last_returned = stored[-1].seq if stored else after_seq
    events = [shown for shown in (visible(principal, e) for e in stored) if shown is not None]
    return RecordingPage(
        session_id=str(session.id),
        events=events,
        last_seq=session.last_seq,
        has_more=last_returned < session.last_seq,
    )
