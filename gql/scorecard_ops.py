"""Scorecards in GraphQL: submitScorecard and scorecards(sessionId)."""

from __future__ import annotations

import strawberry

from gql.context import Info, principal_of
from gql.types.scorecard import Scorecard, SubmitScorecardInput
from resolvers import scorecards
from resolvers.scorecards import ScorecardSpec


@strawberry.type
class ScorecardQuery:
    @strawberry.field(
        description="The session's scorecards, oldest first. Staff only (interviewer and"
        " ATS tokens); FORBIDDEN for candidates."
    )
    async def scorecards(self, info: Info, session_id: strawberry.ID) -> list[Scorecard]:
        views = await scorecards.list_scorecards(await principal_of(info), session_id)
        return [Scorecard.of(view) for view in views]


@strawberry.type
class ScorecardMutation:
    @strawberry.mutation(
        description="Submit your scorecard for the session (interviewer tokens; one per"
        " interviewer: submitting again replaces it). Never shown to the candidate."
    )
    async def submit_scorecard(
        self, info: Info, session_id: strawberry.ID, input: SubmitScorecardInput
    ) -> Scorecard:
        spec = ScorecardSpec(
            recommendation=input.recommendation,
            ratings=[rating.spec() for rating in input.ratings],
            summary=input.summary,
        )
        view = await scorecards.submit_scorecard(
            await principal_of(info), session_id, spec, log=info.context.log
        )
        return Scorecard.of(view)
