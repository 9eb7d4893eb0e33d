from __future__ import annotations

import uuid
from datetime import datetime

import strawberry

from gql.context import Info, principal_of
from gql.types.common import PageInfo
from gql.types.question import Question
from gql.types.workspace import Sandbox
from models.language import Language
from models.question import Question as QuestionModel
from models.session import InterviewSession as SessionModel
from models.session import SessionStatus
from resolvers.pagination import Page
from resolvers.questions import view_question
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

    @strawberry.field
    async def question(self, info: Info) -> Question:
        principal = await principal_of(info)
        model = await QuestionModel.get(id=self.question_id, account_id=principal.account_id)
        return Question.of(await view_question(principal, model))

    @strawberry.field(description="The session's current (or last) sandbox.")
    async def sandbox(self, info: Info) -> Sandbox | None:
        await principal_of(info)  # the session itself was reached through the account
        record = await info.context.sandboxes.latest(uuid.UUID(str(self.id)))
        return Sandbox.of(record) if record else None

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
        return cls(
            edges=edges,
            page_info=PageInfo(
                has_next_page=page.has_next_page,
                has_previous_page=page.has_previous_page,
                start_cursor=edges[0].cursor if edges else None,
                end_cursor=edges[-1].cursor if edges else None,
            ),
            total_count=page.total_count,
        )


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
