from __future__ import annotations

import uuid
from datetime import datetime
from typing import cast

import strawberry

from gql.claude_ops import ClaudeRun
from gql.context import Info, principal_of
from gql.terminal_ops import Terminal
from gql.testrun_ops import TestRun
from gql.types.common import Connection, PageInfo, connection_of
from gql.types.event import NoteEvent, event_of
from gql.types.question import Question
from gql.types.report import SessionReport, resolve_report
from gql.types.scorecard import Scorecard
from gql.types.workspace import Sandbox
from models.language import Language
from models.session import InterviewSession as SessionModel
from models.session import SessionStatus
from resolvers.errors import NotFound
from resolvers.pagination import Page, page_of
from resolvers.sessions import CreatedSession, SessionSpec

strawberry.enum(SessionStatus, name="SessionStatus")


@strawberry.type
class InterviewSession:
    id: strawberry.ID
    status: SessionStatus
    language: Language
    candidate_name: str
    candidate_email: str
    external_id: str | None = strawberry.field(description="The ATS's id for this interview.")
    created_at: datetime
    started_at: datetime | None
    ended_at: datetime | None
    expires_at: datetime | None
    last_seq: int = strawberry.field(description="Seq of the newest event in the recording.")
    question_id: strawberry.Private[str]

    @property
    def _session_id(self) -> uuid.UUID:
        return uuid.UUID(str(self.id))

    @strawberry.field
    async def question(self, info: Info) -> Question:
        await principal_of(info)
        view = await info.context.loaders.question.load(uuid.UUID(self.question_id))
        if view is None:  # not expected: the session was reached through the account
            raise NotFound("question")
        return Question.of(view)

    @strawberry.field(description="The session's current (or last) sandbox.")
    async def sandbox(self, info: Info) -> Sandbox | None:
        await principal_of(info)
        record = await info.context.loaders.sandbox.load(self._session_id)
        return Sandbox.of(record) if record else None

    @strawberry.field(description="The session's test runs, newest first.")
    async def test_runs(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> Connection[TestRun]:
        await principal_of(info)
        runs = await info.context.loaders.test_runs.load(self._session_id)
        return connection_of(page_of(runs, first=first, after=after), TestRun.of)

    @strawberry.field(description="The newest test run, or null before the first.")
    async def last_test_run(self, info: Info) -> TestRun | None:
        await principal_of(info)
        runs = await info.context.loaders.test_runs.load(self._session_id)
        return TestRun.of(runs[0]) if runs else None

    @strawberry.field(description="The session's Claude runs, newest first.")
    async def claude_runs(
        self, info: Info, first: int = 20, after: str | None = None
    ) -> Connection[ClaudeRun]:
        await principal_of(info)
        runs = await info.context.loaders.claude_runs.load(self._session_id)
        return connection_of(page_of(runs, first=first, after=after), ClaudeRun.of)

    @strawberry.field(
        description="The session's terminals: open ones first (to reattach after a reload),"
        " then newest first."
    )
    async def terminals(self, info: Info) -> list[Terminal]:
        await principal_of(info)
        return [Terminal.of(t) for t in await info.context.loaders.terminals.load(self._session_id)]

    @strawberry.field(
        description="Interviewer notes, oldest first. Always empty for candidates, who never"
        " see notes (as in their recording)."
    )
    async def notes(self, info: Info) -> list[NoteEvent]:
        await principal_of(info)
        records = await info.context.loaders.notes.load(self._session_id)
        # note.added events, whose GraphQL type is NoteEvent.
        return [cast(NoteEvent, event_of(r)) for r in records]

    @strawberry.field(
        description="Interviewers' scorecards, oldest first. Always empty for candidates."
    )
    async def scorecards(self, info: Info) -> list[Scorecard]:
        await principal_of(info)
        views = await info.context.loaders.scorecards.load(self._session_id)
        return [Scorecard.of(v) for v in views]

    @strawberry.field(
        description="The result of the session: score, cases passed, the final test run,"
        " agent usage, activity, the interviewers' recommendations and `reportUrl`."
        " Staff only: FORBIDDEN for candidates."
    )
    async def report(self, info: Info) -> SessionReport | None:
        return await resolve_report(info, str(self.id))

    @classmethod
    def of(cls, model: SessionModel) -> InterviewSession:
        return cls(
            id=strawberry.ID(str(model.id)),
            status=model.status,
            language=Language(model.language),
            candidate_name=model.candidate_name,
            candidate_email=model.candidate_email,
            external_id=model.external_id,
            created_at=model.created_at,
            started_at=model.started_at,
            ended_at=model.ended_at,
            expires_at=model.expires_at,
            last_seq=model.last_seq,
            question_id=str(model.question_id),
        )


@strawberry.type
class InterviewSessionEdge:
    cursor: str
    node: InterviewSession


@strawberry.type
class InterviewSessionConnection:
    edges: list[InterviewSessionEdge]
    page_info: PageInfo
    total_count: int

    @classmethod
    def of(cls, page: Page[SessionModel]) -> InterviewSessionConnection:
        edges = [InterviewSessionEdge(cursor=c, node=InterviewSession.of(m)) for c, m in page.items]
        return cls(edges=edges, page_info=PageInfo.of(page), total_count=page.total_count)


@strawberry.type
class CreateSessionPayload:
    session: InterviewSession
    candidate_token: str = strawberry.field(description="Opens this session only. Shown only once.")
    invite_url: str

    @classmethod
    def of(cls, created: CreatedSession) -> CreateSessionPayload:
        return cls(
            session=InterviewSession.of(created.session),
            candidate_token=created.candidate_token,
            invite_url=created.invite_url,
        )


@strawberry.input
class CreateSessionInput:
    question_id: strawberry.ID
    candidate_name: str
    candidate_email: str
    language: Language | None = None
    external_id: str | None = None
    expires_at: datetime | None = None

    def to_spec(self) -> SessionSpec:
        return SessionSpec(
            question_id=str(self.question_id),
            candidate_name=self.candidate_name,
            candidate_email=self.candidate_email,
            language=self.language.value if self.language else None,
            external_id=self.external_id,
            expires_at=self.expires_at,
        )
