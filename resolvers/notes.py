"""Interviewer notes: part of the recording, never shown to the candidate."""

from __future__ import annotations

from models.account import User
from resolvers import validation as check
from resolvers.auth import Principal
from resolvers.event_kinds import NoteAdded
from resolvers.events import EventLog, EventRecord
from resolvers.sessions import get_session


async def add_note(
    principal: Principal, session_id: str, text: str, *, log: EventLog
) -> EventRecord:
    principal.require_staff()
    body = check.text("text", text, max_length=10_000)
    session = await get_session(principal, session_id)
    user = await User.get_or_none(id=principal.user_id) if principal.user_id else None
    author = user.name if user else principal.kind.value
    return await log.append(session.id, NoteAdded(body, author=author))
