"""The questions connection (issue 11): latest revisions, newest first by creation,
stable while questions are edited; search, tag and difficulty filters; one page
costs the same SQL whatever its size."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from tests import test_timeline_queries
from tests.conftest import Account
from tests.question_support import LIST, create, staff, titles, update
from tests.support import Api

count_queries = test_timeline_queries.count_queries  # the fixture, shared


async def test_questions_page_newest_first_through_an_edit(api: Api, account: Account) -> None:
    first = await create(api, account, "Graph walk", tags=["Graphs", "bfs"], difficulty="MEDIUM")
    second = await create(api, account, "Knapsack", prompt="Pack; no graph.", difficulty="HARD")
    third = await create(api, account, "Fizz", tags=["system_design"], difficulty="EASY")
    fourth = await create(api, account, "Buzz", tags=["systemxdesign"], difficulty="EASY")
    await update(api, account, first["id"], "Graph walk v2", tags=["Graphs", "bfs"])
    newest_first = [fourth["id"], third["id"], second["id"], first["id"], account["questionId"]]

    seen: list[str] = []
    after: str | None = None
    while True:
        page = await api(LIST, {"first": 2, "after": after}, token=staff(account))
        connection = page.ok()["questions"]
        assert connection["totalCount"] == 5
        assert connection["pageInfo"]["hasPreviousPage"] is (after is not None)
        seen += [edge["node"]["id"] for edge in connection["edges"]]
        if not connection["pageInfo"]["hasNextPage"]:
            break
        after = connection["pageInfo"]["endCursor"]
        if len(seen) == 2:
            # Revised while being paged: it keeps its place (sorted by creation).
            await update(
                api,
                account,
                second["id"],
                "Knapsack v2",
                prompt="Pack; no graph.",
                difficulty="HARD",
            )
    assert seen == newest_first

    listed = (await api(LIST, {"first": 100}, token=staff(account))).ok()["questions"]["edges"]
    nodes = {edge["node"]["id"]: edge["node"] for edge in listed}
    assert (nodes[first["id"]]["title"], nodes[first["id"]]["revision"]) == ("Graph walk v2", 2)
    assert nodes[first["id"]]["tags"] == ["graphs", "bfs"]
    assert nodes[second["id"]]["title"] == "Knapsack v2"
    assert nodes[first["id"]]["languages"] == [{"language": "PYTHON"}]
    assert [c["name"] for c in nodes[first["id"]]["testCases"]] == ["one plus two", "secret"]

    assert await titles(api, account, search="GRAPH") == ["Knapsack v2", "Graph walk v2"]
    assert await titles(api, account, search="  two sum ") == ["Two Sum"]
    assert await titles(api, account, tag="Graphs") == ["Graph walk v2"]
    assert await titles(api, account, tag="system_design") == ["Fizz"]  # "_" is no wildcard
    assert await titles(api, account, tag="design") == []  # whole tags only
    assert await titles(api, account, difficulty="EASY") == ["Buzz", "Fizz"]
    assert await titles(api, account, search="graph", difficulty="HARD") == ["Knapsack v2"]
    # An update replaces everything: what it leaves out is gone.
    assert await titles(api, account, difficulty="MEDIUM") == []


async def test_a_page_of_questions_costs_the_same_queries_as_one(
    api: Api, account: Account, count_queries: Callable[[], Any]
) -> None:
    for i in range(4):
        await create(api, account, f"Question {i}")
    costs = []
    for first in (1, 5):
        with count_queries() as queries:
            listed = await api(LIST, {"first": first}, token=staff(account))
        assert len(listed.ok()["questions"]["edges"]) == first
        costs.append(len(queries))
    assert costs[0] == costs[1], costs


async def test_listing_arguments_are_checked(api: Api, account: Account) -> None:
    for variables, field in (
        ({"first": 0}, "first"),
        ({"first": 101}, "first"),
        ({"first": 5, "after": "garbage"}, "after"),
        ({"first": 5, "tag": 'x"y'}, "tag"),
        ({"first": 5, "search": "s" * 201}, "search"),
    ):
        result = await api(LIST, variables, token=staff(account))
        assert result.codes == ["BAD_USER_INPUT"], variables
        assert result.errors[0]["extensions"]["field"] == field
