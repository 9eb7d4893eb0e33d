"""What a caller may see of an event.

Staff (interviewers, ATS) see every event whole. Candidates never see
interviewer notes, and of anything about a hidden test case only that it
passed or failed: each payload says what a candidate may see of it
(``Payload.for_candidate`` in ``resolvers.event_payload``; notes are
``STAFF_ONLY``, a hidden ``testrun.case`` keeps only run, index and passed).
"""

from __future__ import annotations

import dataclasses

from resolvers.auth import Principal
from resolvers.events import EventRecord


def visible(principal: Principal, record: EventRecord) -> EventRecord | None:
    if principal.is_staff:
        return record
    shown = record.payload.for_candidate()
    if shown is record.payload:
        return record  # the very record: watchers then share one rendering
    if shown is None:
        return None
    return dataclasses.replace(record, payload=shown, data=shown.to_json())
