"""The interface every session event type implements."""

from __future__ import annotations

from datetime import datetime

import strawberry


@strawberry.interface
class SessionEvent:
    seq: int
    at: datetime
    type: str
