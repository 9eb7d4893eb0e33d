"""gql.renders: one rendering per batch object, bounded, and owned by one app."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import strawberry

from gql.renders import IdentityCache, SharedRenders
from resolvers.event_kinds import FileWritten
from resolvers.events import EventRecord

SESSION = uuid.uuid4()


def batch(seq: int) -> list[EventRecord]:
    payload = FileWritten("a.py", size=seq)
    return [EventRecord(SESSION, seq, payload.kind, datetime.now(UTC), payload, payload.to_json())]


def test_a_batch_is_rendered_once_and_only_for_that_very_list() -> None:
    renders = SharedRenders()
    sid = strawberry.ID(str(SESSION))
    first = batch(1)
    value = renders.batch(sid, first)
    assert renders.batch(sid, first) is value
    # An equal list is another batch (another watcher's filtered view): rendered anew.
    assert renders.batch(sid, list(first)) is not value
    assert value.last_seq == 1
    assert [e.type for e in value.events] == ["file.written"]


def test_the_cache_keeps_only_the_most_recent_entries() -> None:
    cache: IdentityCache[str] = IdentityCache(size=2)
    sources = [object() for _ in range(3)]
    for i, source in enumerate(sources):
        cache.put(source, f"v{i}")
    assert len(cache) == 2
    assert cache.get(sources[0]) is None  # first in, first out
    assert cache.get(sources[2]) == "v2"
    assert cache.get(sources[2], key="other document") is None


def test_two_apps_share_nothing() -> None:
    a, b = SharedRenders(), SharedRenders()
    sid = strawberry.ID(str(SESSION))
    shared = batch(2)
    assert a.batch(sid, shared) is not b.batch(sid, shared)
