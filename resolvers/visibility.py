"""What a caller may see of an event.

Staff (interviewers, ATS) see every event whole. Candidates never see
interviewer notes, and of anything about a hidden test case only that it
passed or failed: events mark such payloads with ``"hidden": true`` and the
writer puts the few fields a candidate may see under ``"public"``.
"""

from __future__ import annotations

import dataclasses

from resolvers.auth import Principal
from resolvers.events import EventRecord

STAFF_ONLY_TYPES = frozenset({"note.added"})


def visible(principal: Principal, record: EventRecord) -> EventRecord | None:
    if principal.is_staff:
        return record
    if record.type in STAFF_ONLY_TYPES:
        return None
    if record.payload.get("hidden"):
        public = record.payload.get("public", {})
        return dataclasses.replace(record, payload={"hidden": True, **public})
    return record
