from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

import strawberry

from resolvers.pagination import Page

N = TypeVar("N")
T = TypeVar("T")


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None

    @classmethod
    def of(cls, page: Page[Any]) -> PageInfo:
        return cls(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=page.items[0][0] if page.items else None,
            end_cursor=page.items[-1][0] if page.items else None,
        )


@strawberry.type
class Edge(Generic[N]):
    cursor: str
    node: N


@strawberry.type(description="A Relay connection; `totalCount` counts every page.")
class Connection(Generic[N]):
    """Named after its node in the schema: ``Connection[TestRun]`` is ``TestRunConnection``."""

    edges: list[Edge[N]]
    page_info: PageInfo
    total_count: int


def connection_of(page: Page[T], node: Callable[[T], N]) -> Connection[N]:
    return Connection(
        edges=[Edge(cursor=cursor, node=node(item)) for cursor, item in page.items],
        page_info=PageInfo.of(page),
        total_count=page.total_count,
    )
