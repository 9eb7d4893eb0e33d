"""The interface every session event type implements, and the registry that builds them.

Each GraphQL event type is built from a typed payload (``resolvers.event_kinds``):
``register(PayloadClass, build)`` names the function that turns a record with
that payload into its GraphQL value. tests/test_event_kinds.py fails when a kind
has no builder; mypy, when a builder reads a field its payload lacks.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

import strawberry

from resolvers.event_payload import Payload
from resolvers.events import EventRecord


@strawberry.interface
class SessionEvent:
    seq: int
    at: datetime
    type: str


def meta(record: EventRecord) -> dict[str, Any]:
    """The fields every event type takes from the record itself."""
    return {"seq": record.seq, "at": record.at, "type": record.type}


P = TypeVar("P", bound=Payload)
Builder = Callable[[EventRecord, P], SessionEvent]
BUILDERS: dict[type[Payload], Callable[[EventRecord, Any], SessionEvent]] = {}


def register(kind: type[P], build: Builder[P]) -> None:
    """``build`` makes the GraphQL value of events whose payload is a ``kind``."""
    BUILDERS[kind] = build
