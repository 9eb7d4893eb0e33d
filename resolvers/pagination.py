"""Relay-style keyset pagination: opaque cursors over (created_at, id), newest first."""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from tortoise.expressions import Q
from tortoise.models import Model
from tortoise.queryset import QuerySet

from resolvers.errors import BadUserInput
from resolvers.validation import int_range

T = TypeVar("T")
M = TypeVar("M", bound=Model)
MAX_PAGE = 100


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    items: Sequence[tuple[str, T]]
    """Each item with its cursor."""
    has_next_page: bool
    has_previous_page: bool
    total_count: int


def encode_cursor(created_at: datetime, object_id: uuid.UUID) -> str:
    raw = json.dumps([created_at.isoformat(), str(object_id)]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(field: str, cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        stamp, object_id = json.loads(raw)
        return datetime.fromisoformat(stamp), uuid.UUID(object_id)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError):
        raise BadUserInput(field, "is not a valid cursor") from None


async def paginate(
    query: QuerySet[M], *, first: int, after: str | None, tiebreak: str = "id"
) -> Page[M]:
    """Page through ``query`` newest first; the model must have ``created_at`` and a UUID
    ``tiebreak`` field (``id`` unless rows are known by another one)."""
    int_range("first", first, low=1, high=MAX_PAGE)
    total = await query.count()
    if after is not None:
        stamp, last_id = decode_cursor("after", after)
        tie: dict[str, Any] = {"created_at": stamp, f"{tiebreak}__lt": last_id}
        before_in_tie = Q(**tie)
        query = query.filter(Q(created_at__lt=stamp) | before_in_tie)
    rows = await query.order_by("-created_at", f"-{tiebreak}").limit(first + 1)
    items = [(encode_cursor(r.created_at, getattr(r, tiebreak)), r) for r in rows[:first]]  # type: ignore[attr-defined]
    return Page(
        items=items,
        has_next_page=len(rows) > first,
        has_previous_page=after is not None,
        total_count=total,
    )


def page_of(rows: Sequence[M], *, first: int, after: str | None) -> Page[M]:
    """``paginate`` over rows already loaded (a batch loader's share of one query), with
    the same cursors and order; ``rows`` may come in any order."""
    int_range("first", first, low=1, high=MAX_PAGE)
    ordered = sorted(rows, key=lambda r: (r.created_at, r.id), reverse=True)  # type: ignore[attr-defined]
    if after is not None:
        stamp, last_id = decode_cursor("after", after)
        ordered = [r for r in ordered if (r.created_at, r.id) < (stamp, last_id)]  # type: ignore[attr-defined]
    items = [(encode_cursor(r.created_at, r.id), r) for r in ordered[:first]]  # type: ignore[attr-defined]
    return Page(
        items=items,
        has_next_page=len(ordered) > first,
        has_previous_page=after is not None,
        total_count=len(rows),
    )
