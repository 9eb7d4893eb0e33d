"""The SQL a page of sessions costs with every timeline field asked: the same for 5
sessions as for 20 (gql.loaders batches each field over the page)."""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from strawberry.dataloader import DataLoader
from tortoise import connections

import gql.loaders
from tests.conftest import Account
from tests.support import Api
from tests.timeline_support import PAGE, new_session, seed_timeline

_counted: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("counted", default=None)
EXECUTE_METHODS = ("execute_query", "execute_query_dict", "execute_insert", "execute_script")


@pytest.fixture
def count_queries(monkeypatch: pytest.MonkeyPatch) -> Callable[[], Any]:
    """``with count() as queries:`` -- the SQL statements this task (and the tasks it
    starts: the request under httpx's ASGI transport) sends to the database, counted at
    the Tortoise client's execute methods. Tasks started before -- the reaper, other
    requests' background work -- keep their own context and are not counted."""
    client_class = type(connections.get("default"))
    for name in EXECUTE_METHODS:
        original = getattr(client_class, name)

        @functools.wraps(original)
        async def counting(
            self: Any, query: str, *args: Any, _original: Any = original, **kwargs: Any
        ) -> Any:
            queries = _counted.get()
            if queries is not None:
                queries.append(query)
            return await _original(self, query, *args, **kwargs)

        monkeypatch.setattr(client_class, name, counting)

    @contextmanager
    def count() -> Iterator[list[str]]:
        queries: list[str] = []
        token = _counted.set(queries)
        try:
            yield queries
        finally:
            _counted.reset(token)

    return count


async def page_with_timelines(api: Api, account: Account, sessions: int) -> None:
    """``sessions`` sessions in the account (the seeded one included), each with a timeline."""
    await seed_timeline(api, account, account["sessionId"])
    for _ in range(sessions - 1):
        session_id, _token = await new_session(api, account)
        await seed_timeline(api, account, session_id)


async def queries_for_page(
    api: Api, account: Account, count: Callable[[], Any], size: int
) -> list[str]:
    with count() as queries:
        page = (await api(PAGE, {"n": size}, token=account["interviewerToken"])).ok()
    # The token check writes last_used_at at most once a minute: whether a request
    # does depends on the clock, not on the page.
    queries = [q for q in queries if "api_token" not in q]
    edges = page["sessions"]["edges"]
    assert len(edges) == size
    # Every field of every session was answered, with its data.
    assert all(e["node"]["testRuns"]["totalCount"] == 3 for e in edges)
    assert all(len(e["node"]["terminals"]) == 3 for e in edges)
    assert all(len(e["node"]["notes"]) == 2 for e in edges)
    assert all(len(e["node"]["lastTestRun"]["results"]) == 2 for e in edges)
    assert all(e["node"]["question"]["title"] == "Two Sum" for e in edges)
    return queries


async def test_a_page_of_sessions_costs_the_same_queries_whatever_its_size(
    api: Api, account: Account, count_queries: Callable[[], Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    await page_with_timelines(api, account, 20)

    small = await queries_for_page(api, account, count_queries, 5)
    large = await queries_for_page(api, account, count_queries, 20)
    assert len(small) == len(large), (small, large)
    # The page and its count, then one query per field (the question's in three; the
    # runs' results in one for all runs); lastTestRun shares testRuns' query.
    assert len(large) <= 14, large

    # Positive control: loaders that load one session at a time -- what the fields did
    # before -- make the count grow with the page, and this test sees it.
    monkeypatch.setattr(gql.loaders, "DataLoader", functools.partial(DataLoader, max_batch_size=1))
    unbatched_small = await queries_for_page(api, account, count_queries, 5)
    unbatched_large = await queries_for_page(api, account, count_queries, 20)
    assert len(unbatched_large) - len(unbatched_small) >= 15 * 6
