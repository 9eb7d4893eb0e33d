"""Scorecards: each interviewer's recommendation and ratings for a session.

- **One per interviewer user and session**: submitting again replaces the scorecard
  (same id; ``createdAt`` is the first submission, ``updatedAt`` the last).
- **Submitted by interviewer tokens only**, as the user the token acts for: an ATS token
  acts for no one, so it may read scorecards but not sign one (FORBIDDEN).
- **Never the candidate's**: their token gets FORBIDDEN from ``scorecards`` and
  ``submitScorecard``, nothing from the batched reader (``scorecards_by_session``, for
  session fields shared with staff queries, like notes), and the ``scorecard.submitted``
  event is staff-only in the recording and the live stream (``visibility``).
- Each submission is recorded in the session's log (``scorecard.submitted``: who, which
  recommendation) and queued as a ``scorecard.submitted`` webhook in the transaction
  that stores it.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.exceptions import IntegrityError
from tortoise.transactions import in_transaction

from models.account import User
from models.scorecard import Recommendation, Scorecard
from models.session import InterviewSession
from resolvers import validation as check
from resolvers.auth import Principal, PrincipalKind
from resolvers.errors import BadUserInput, Forbidden
from resolvers.event_kinds import ScorecardSubmitted
from resolvers.events import EventLog
from resolvers.sessions import get_session
from resolvers.timeline import BySession, session_scope
from resolvers.webhooks.events import enqueue_session_event

MAX_RATINGS = 30
MAX_CRITERION_CHARS = 200
MAX_COMMENT_CHARS = 5_000
MAX_SUMMARY_CHARS = 20_000
LOWEST_SCORE, HIGHEST_SCORE = 1, 4


@dataclass(frozen=True, slots=True)
class Rating:
    criterion: str
    score: int
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class ScorecardSpec:
    recommendation: Recommendation
    ratings: Sequence[Rating]
    summary: str | None = None


@dataclass(frozen=True, slots=True)
class ScorecardView:
    id: uuid.UUID
    session_id: uuid.UUID
    author: User
    recommendation: Recommendation
    ratings: list[Rating]
    summary: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, row: Scorecard, author: User) -> ScorecardView:
        return cls(
            id=row.id,
            session_id=row.session_id,
            author=author,
            recommendation=row.recommendation,
            ratings=[
                Rating(r["criterion"], int(r["score"]), r.get("comment")) for r in row.ratings
            ],
            summary=row.summary,
            created_at=row.created_at,
            updated_at=row.updated_at,
        )


async def submit_scorecard(
    principal: Principal, session_id: str, spec: ScorecardSpec, *, log: EventLog
) -> ScorecardView:
    """Store the caller's scorecard for the session, replacing theirs if they have one."""
    if principal.kind is PrincipalKind.ATS:
        raise Forbidden(
            "an ATS token acts for no interviewer: it may read scorecards, not sign one"
        )
    principal.require_interviewer()
    if principal.user_id is None:
        raise Forbidden("this token acts for no user, and a scorecard is an interviewer's")
    ratings = checked_ratings(spec.ratings)
    summary = check.text(
        "input.summary", spec.summary or "", max_length=MAX_SUMMARY_CHARS, allow_empty=True
    )
    session = await get_session(principal, session_id)
    author = await User.get_or_none(id=principal.user_id, account_id=principal.account_id)
    if author is None:
        raise Forbidden("the token's user no longer exists")
    try:
        row, replaced = await _store(session, author, spec.recommendation, ratings, summary)
    except IntegrityError:
        # The same interviewer's first submission raced another: theirs is stored now,
        # and this one replaces it.
        row, replaced = await _store(session, author, spec.recommendation, ratings, summary)
    await log.append(
        session.id,
        ScorecardSubmitted(
            scorecard_id=str(row.id),
            author=author.name,
            recommendation=row.recommendation,
            replaced=replaced,
        ),
    )
    return ScorecardView.of(row, author)


async def _store(
    session: InterviewSession,
    author: User,
    recommendation: Recommendation,
    ratings: list[dict[str, Any]],
    summary: str,
) -> tuple[Scorecard, bool]:
    async with in_transaction() as conn:
        row = (
            await Scorecard.filter(session_id=session.id, author_id=author.id)
            .select_for_update()
            .using_db(conn)
            .first()
        )
        replaced = row is not None
        if row is None:
            row = await Scorecard.create(
                session_id=session.id,
                author_id=author.id,
                recommendation=recommendation,
                ratings=ratings,
                summary=summary,
                using_db=conn,
            )
        else:
            row.recommendation = recommendation
            row.ratings = ratings
            row.summary = summary
            await row.save(using_db=conn)
        await enqueue_session_event(
            session,
            "scorecard.submitted",
            using_db=conn,
            scorecard=webhook_data(ScorecardView.of(row, author), replaced=replaced),
        )
    return row, replaced


def webhook_data(view: ScorecardView, *, replaced: bool) -> dict[str, Any]:
    """The ``scorecard`` of a ``scorecard.submitted`` webhook: the whole scorecard (an ATS
    token may read it anyway) and who signed it."""
    return {
        "id": str(view.id),
        "interviewer": {
            "id": str(view.author.id),
            "name": view.author.name,
            "email": view.author.email,
        },
        "recommendation": view.recommendation.value,
        "ratings": [_rating_json(r) for r in view.ratings],
        "summary": view.summary,
        "replaced": replaced,
        "submittedAt": view.updated_at.isoformat(),
    }


def _rating_json(rating: Rating) -> dict[str, Any]:
    return {"criterion": rating.criterion, "score": rating.score, "comment": rating.comment}


def checked_ratings(ratings: Sequence[Rating]) -> list[dict[str, Any]]:
    """The ratings as stored, or BAD_USER_INPUT naming the field (``input.ratings[2].score``)."""
    if len(ratings) > MAX_RATINGS:
        raise BadUserInput("input.ratings", f"at most {MAX_RATINGS} ratings")
    seen: dict[str, int] = {}
    out = []
    for i, rating in enumerate(ratings):
        at = f"input.ratings[{i}]"
        criterion = check.text(f"{at}.criterion", rating.criterion, max_length=MAX_CRITERION_CHARS)
        if (first := seen.setdefault(criterion.casefold(), i)) != i:
            raise BadUserInput(f"{at}.criterion", f"repeats input.ratings[{first}]")
        check.int_range(f"{at}.score", rating.score, low=LOWEST_SCORE, high=HIGHEST_SCORE)
        comment = check.optional_text(f"{at}.comment", rating.comment, max_length=MAX_COMMENT_CHARS)
        out.append(_rating_json(Rating(criterion, rating.score, comment)))
    return out


async def list_scorecards(principal: Principal, session_id: str) -> list[ScorecardView]:
    """The session's scorecards, oldest first: staff of its account only."""
    principal.require_staff()
    session = await get_session(principal, session_id)
    return await session_scorecards(session.id)


async def session_scorecards(
    session_id: uuid.UUID, using_db: BaseDBAsyncClient | None = None
) -> list[ScorecardView]:
    """For callers that checked access to the session already (the report): its
    scorecards, oldest first, with their authors, in one query."""
    rows = (
        await Scorecard.filter(session_id=session_id)
        .select_related("author")
        .order_by("created_at", "id")
        .using_db(using_db)
    )
    return [ScorecardView.of(row, row.author) for row in rows]


async def scorecards_by_session(
    principal: Principal, session_ids: Sequence[uuid.UUID]
) -> BySession[ScorecardView]:
    """Scorecards of many sessions in one query, oldest first, grouped by session (for a
    batch loader of ``InterviewSession.scorecards``). A candidate gets none: an error
    would break a query shared with staff fields, and say that scorecards exist."""
    if not principal.is_staff:
        return {}
    rows = (
        await Scorecard.filter(session_scope(principal, session_ids))
        .select_related("author")
        .order_by("created_at", "id")
    )
    grouped: BySession[ScorecardView] = {}
    for row in rows:
        grouped.setdefault(row.session_id, []).append(ScorecardView.of(row, row.author))
    return grouped
