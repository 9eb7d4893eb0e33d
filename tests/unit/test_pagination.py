"""resolvers.pagination on its own: opaque cursors, bad cursors as BAD_USER_INPUT, and keyset
pages newest first that neither skip nor repeat a row, also among rows created at the very
same instant (the id breaks the tie). Real test database, a fresh account's questions."""

from __future__ import annotations

import base64
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from starlette.applications import Starlette

from models.question import Question
from resolvers.errors import BadUserInput
from resolvers.pagination import MAX_PAGE, decode_cursor, encode_cursor, paginate
from tests.conftest import Account


def test_a_cursor_round_trips_and_is_opaque() -> None:
    stamp, object_id = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), uuid.uuid4()
    cursor = encode_cursor(stamp, object_id)
    assert "=" not in cursor
    assert str(object_id) not in cursor
    assert decode_cursor("after", cursor) == (stamp, object_id)


@pytest.mark.parametrize(
    "cursor",
    [
        "",
        "!!!",
        "bm90IGpzb24",  # "not json"
        base64.urlsafe_b64encode(b'["2026-01-01T00:00:00", "not-a-uuid"]').decode(),
        base64.urlsafe_b64encode(b'["yesterday", "' + str(uuid.uuid4()).encode() + b'"]').decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(b"[1, 2, 3]").decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
    ],
)
def test_a_bad_cursor_is_bad_user_input_naming_the_argument(cursor: str) -> None:
    with pytest.raises(BadUserInput) as raised:
        decode_cursor("after", cursor)
    assert raised.value.field == "after"
    assert raised.value.code == "BAD_USER_INPUT"


async def test_pages_walk_every_row_once_newest_first_through_ties(
    app: Starlette, account: Account
) -> None:
    owner = uuid.UUID(account["accountId"])
    base = datetime(2026, 3, 1, tzinfo=UTC)
    made = [await Question.create(account_id=owner, title=f"q{i}", prompt="p") for i in range(7)]
    # Three at one instant, then one a second apart: the tie is ordered by id.
    stamps = [base, base, base, *(base + timedelta(seconds=s) for s in (1, 2, 3, 4))]
    for question, stamp in zip(made, stamps, strict=True):
        await Question.filter(id=question.id).update(created_at=stamp)
    expected = [
        q.id for q, _ in sorted(zip(made, stamps, strict=True), key=lambda p: (p[1], p[0].id))
    ][::-1]
    query = Question.filter(account_id=owner, title__startswith="q")

    seen: list[uuid.UUID] = []
    after: str | None = None
    pages = 0
    while True:
        page = await paginate(query, first=2, after=after)
        pages += 1
        assert page.total_count == 7
        assert page.has_previous_page is (after is not None)
        seen += [q.id for _, q in page.items]
        if not page.has_next_page:
            break
        after = page.items[-1][0]
    assert seen == expected
    assert pages == 4


async def test_first_is_bounded(app: Starlette, account: Account) -> None:
    query = Question.filter(account_id=uuid.UUID(account["accountId"]))
    for first in (0, -1, MAX_PAGE + 1):
        with pytest.raises(BadUserInput):
            await paginate(query, first=first, after=None)
    page = await paginate(query, first=MAX_PAGE, after=None)
    assert page.has_next_page is False
    assert len(page.items) == page.total_count
