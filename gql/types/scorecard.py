"""Scorecards in GraphQL: the scorecard, its input, and the ``scorecard.submitted`` event."""

from __future__ import annotations

from datetime import datetime

import strawberry

from gql.types.account import User
from gql.types.event_base import SessionEvent, meta, register
from models.scorecard import Recommendation
from resolvers.event_kinds import ScorecardSubmitted
from resolvers.scorecards import HIGHEST_SCORE, LOWEST_SCORE, Rating, ScorecardView

strawberry.enum(Recommendation, name="Recommendation")


@strawberry.type
class ScorecardRating:
    criterion: str
    score: int = strawberry.field(description=f"{LOWEST_SCORE} (lowest) to {HIGHEST_SCORE}.")
    comment: str | None


@strawberry.type(description="An interviewer's verdict on a session; never shown to candidates.")
class Scorecard:
    id: strawberry.ID
    session_id: strawberry.ID
    interviewer: User = strawberry.field(description="Who submitted it.")
    recommendation: Recommendation
    ratings: list[ScorecardRating]
    summary: str
    created_at: datetime = strawberry.field(description="When it was first submitted.")
    updated_at: datetime = strawberry.field(description="When it was last submitted.")

    @classmethod
    def of(cls, view: ScorecardView) -> Scorecard:
        return cls(
            id=strawberry.ID(str(view.id)),
            session_id=strawberry.ID(str(view.session_id)),
            interviewer=User.of(view.author),
            recommendation=view.recommendation,
            ratings=[
                ScorecardRating(criterion=r.criterion, score=r.score, comment=r.comment)
                for r in view.ratings
            ],
            summary=view.summary,
            created_at=view.created_at,
            updated_at=view.updated_at,
        )


@strawberry.input
class ScorecardRatingInput:
    criterion: str
    score: int = strawberry.field(description=f"{LOWEST_SCORE} (lowest) to {HIGHEST_SCORE}.")
    comment: str | None = None

    def spec(self) -> Rating:
        return Rating(criterion=self.criterion, score=self.score, comment=self.comment)


@strawberry.input
class SubmitScorecardInput:
    recommendation: Recommendation
    ratings: list[ScorecardRatingInput] = strawberry.field(default_factory=list)
    summary: str | None = None


@strawberry.type
class ScorecardSubmittedEvent(SessionEvent):
    """``scorecard.submitted``: an interviewer submitted or replaced their scorecard (never
    shown to the candidate). The scorecard itself: ``scorecards(sessionId)``."""

    scorecard_id: strawberry.ID
    author: str | None
    recommendation: Recommendation | None
    replaced: bool | None


register(
    ScorecardSubmitted,
    lambda r, p: ScorecardSubmittedEvent(
        **meta(r),
        scorecard_id=strawberry.ID(p.scorecard_id),
        author=p.author,
        recommendation=p.recommendation,
        replaced=p.replaced,
    ),
)
