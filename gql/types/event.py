"""Session events in GraphQL: an interface with one type per kind of event."""

from __future__ import annotations

from datetime import datetime
from typing import cast

import strawberry
from strawberry.scalars import JSON

from models.session import SessionStatus
from resolvers.events import EventRecord


@strawberry.interface
class SessionEvent:
    seq: int
    at: datetime
    type: str


@strawberry.type
class SessionLifecycleEvent(SessionEvent):
    """``session.created`` / ``session.started`` / ``session.ended``."""

    status: SessionStatus


@strawberry.type
class GenericSessionEvent(SessionEvent):
    """An event kind without a dedicated type yet; its payload as JSON."""

    payload: JSON


def event_of(record: EventRecord) -> SessionEvent:
    if record.type.startswith("session."):
        return SessionLifecycleEvent(
            seq=record.seq,
            at=record.at,
            type=record.type,
            status=SessionStatus(record.payload["status"]),
        )
    return GenericSessionEvent(
        seq=record.seq, at=record.at, type=record.type, payload=cast(JSON, record.payload)
    )


@strawberry.type
class Recording:
    session_id: strawberry.ID
    events: list[SessionEvent]
    last_seq: int = strawberry.field(description="Seq of the newest event in the session.")
    has_more: bool = strawberry.field(description="More events follow the last one returned.")


EVENT_TYPES: list[type] = [SessionLifecycleEvent, GenericSessionEvent]
