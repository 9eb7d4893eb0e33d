"""The interface every session event type implements."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import strawberry

from resolvers.events import EventRecord


@strawberry.interface
class SessionEvent:
    seq: int
    at: datetime
    type: str


def meta(record: EventRecord) -> dict[str, Any]:
    """The fields every event type takes from the record itself."""
    return {"seq": record.seq, "at": record.at, "type": record.type}
