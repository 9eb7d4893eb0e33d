"""Questions in GraphQL: question, questions; createQuestion, updateQuestion,
archiveQuestion, unarchiveQuestion."""

from __future__ import annotations

import strawberry

from gql.context import Info, principal_of
from gql.types.common import Connection, connection_of
from gql.types.question import CreateQuestionInput, Question
from models.question import Difficulty
from resolvers import questions


@strawberry.type
class QuestionQuery:
    @strawberry.field(
        description="The latest revision for interviewers and ATS; for a candidate, the"
        " revision of their own session (the only question they reach)."
    )
    async def question(self, info: Info, id: strawberry.ID) -> Question:
        return Question.of(await questions.get_question(await principal_of(info), id))

    @strawberry.field(
        description="The account's questions (latest revisions), newest first. `search`:"
        " case-insensitive, in the title or the prompt; `tag`: has this tag."
    )
    async def questions(
        self,
        info: Info,
        *,
        first: int = 20,
        after: str | None = None,
        search: str | None = None,
        tag: str | None = None,
        difficulty: Difficulty | None = None,
        include_archived: bool = False,
    ) -> Connection[Question]:
        page = await questions.list_questions(
            await principal_of(info),
            first=first,
            after=after,
            where=questions.QuestionFilter(
                search=search, tag=tag, difficulty=difficulty, include_archived=include_archived
            ),
        )
        return connection_of(page, Question.of)


@strawberry.type
class QuestionMutation:
    @strawberry.mutation
    async def create_question(self, info: Info, input: CreateQuestionInput) -> Question:
        view = await questions.create_question(
            await principal_of(info),
            input.to_spec(info.context.sandboxes.config_limits),
            max_file_bytes=info.context.settings.max_file_bytes,
        )
        return Question.of(view)

    @strawberry.mutation(
        description="Replace the question's content (a new revision, same id). Sessions"
        " already created keep the revision they started with. CONFLICT if archived."
    )
    async def update_question(
        self, info: Info, id: strawberry.ID, input: CreateQuestionInput
    ) -> Question:
        view = await questions.update_question(
            await principal_of(info),
            id,
            input.to_spec(info.context.sandboxes.config_limits),
            max_file_bytes=info.context.settings.max_file_bytes,
        )
        return Question.of(view)

    @strawberry.mutation(
        description="Hide the question from `questions` (unless `includeArchived`) and from"
        " new sessions (CONFLICT); its sessions carry on. Idempotent."
    )
    async def archive_question(self, info: Info, id: strawberry.ID) -> Question:
        principal = await principal_of(info)
        return Question.of(await questions.set_archived(principal, id, archived=True))

    @strawberry.mutation(description="Undo archiveQuestion. Idempotent.")
    async def unarchive_question(self, info: Info, id: strawberry.ID) -> Question:
        principal = await principal_of(info)
        return Question.of(await questions.set_archived(principal, id, archived=False))
