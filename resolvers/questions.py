"""Questions: create, revise, archive, list and read, with hidden test cases kept from
candidates.

A question's public id is its ``lineage_id``. Reading it by id gives the latest
revision; ``updateQuestion`` adds a revision and leaves the earlier ones as they
are, so a session (which refers to the revision row it started with) keeps its
prompt, languages and test cases. Candidates reach only their own session's
revision.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.expressions import Q
from tortoise.transactions import in_transaction

from models.question import Difficulty, Question, QuestionLanguage, TestCase
from resolvers import validation as check
from resolvers.auth import Principal
from resolvers.errors import Conflict, NotFound
from resolvers.pagination import Page, paginate
from resolvers.question_specs import QuestionSpec, ValidQuestion, tag, validate

MAX_SEARCH = 200


@dataclass(frozen=True, slots=True)
class QuestionView:
    """A question as the caller may see it: candidates get visible cases only."""

    question: Question
    languages: list[QuestionLanguage]
    test_cases: list[TestCase]
    hidden_test_count: int
    total_test_count: int
    for_staff: bool = True
    """False: a candidate's view (no hidden cases, no S3 starter prefix)."""


@dataclass(frozen=True, slots=True)
class QuestionFilter:
    search: str | None = None
    """Case-insensitive, in the title or the prompt."""
    tag: str | None = None
    difficulty: Difficulty | None = None
    include_archived: bool = False


async def view_questions(principal: Principal, questions: Sequence[Question]) -> list[QuestionView]:
    """Views of ``questions`` (revision rows), in their order: two queries for them all."""
    ids = [q.id for q in questions]
    if not ids:
        return []
    languages: defaultdict[uuid.UUID, list[QuestionLanguage]] = defaultdict(list)
    for language in await QuestionLanguage.filter(question_id__in=ids).order_by("id"):
        languages[language.question_id].append(language)
    cases: defaultdict[uuid.UUID, list[TestCase]] = defaultdict(list)
    for case in await TestCase.filter(question_id__in=ids).order_by("question_id", "position"):
        cases[case.question_id].append(case)
    views = []
    for question in questions:
        every = cases[question.id]
        views.append(
            QuestionView(
                question=question,
                languages=languages[question.id],
                test_cases=every if principal.is_staff else [c for c in every if not c.hidden],
                hidden_test_count=sum(1 for c in every if c.hidden),
                total_test_count=len(every),
                for_staff=principal.is_staff,
            )
        )
    return views


async def view_question(principal: Principal, question: Question) -> QuestionView:
    return (await view_questions(principal, [question]))[0]


async def _latest(principal: Principal, question_id: str, *, field: str = "id") -> Question:
    lineage = check.object_id(field, question_id)
    question = await Question.get_or_none(
        lineage_id=lineage, is_latest=True, account_id=principal.account_id
    )
    if question is None:
        raise NotFound("question")
    return question


async def _store_parts(question: Question, valid: ValidQuestion, conn: BaseDBAsyncClient) -> None:
    await QuestionLanguage.bulk_create(
        [QuestionLanguage(question=question, **lang) for lang in valid.languages], using_db=conn
    )
    await TestCase.bulk_create(
        [TestCase(question=question, **case) for case in valid.test_cases], using_db=conn
    )


async def create_question(
    principal: Principal, spec: QuestionSpec, *, max_file_bytes: int
) -> QuestionView:
    principal.require_staff()
    valid = validate(spec, max_file_bytes=max_file_bytes)
    async with in_transaction() as conn:
        question = await Question.create(
            account_id=principal.account_id, using_db=conn, **valid.question
        )
        await _store_parts(question, valid, conn)
    return await view_question(principal, question)


async def update_question(
    principal: Principal, question_id: str, spec: QuestionSpec, *, max_file_bytes: int
) -> QuestionView:
    """Replace the question's content with ``spec`` as a new revision (same public id)."""
    principal.require_staff()
    current = await _latest(principal, question_id)
    valid = validate(spec, max_file_bytes=max_file_bytes)
    if current.archived_at is not None:
        raise Conflict("the question is archived: unarchive it to edit it")
    async with in_transaction() as conn:
        # Conditional: of two concurrent edits (or an edit and an archive) exactly one
        # wins; PostgreSQL makes the other wait for the row, then find it superseded.
        superseded = (
            await Question.filter(id=current.id, is_latest=True, archived_at__isnull=True)
            .using_db(conn)
            .update(is_latest=False)
        )
        if not superseded:
            raise Conflict("the question changed meanwhile: read it again and retry")
        revision = await Question.create(
            account_id=principal.account_id,
            lineage_id=current.lineage_id,
            revision=current.revision + 1,
            created_at=current.created_at,
            using_db=conn,
            **valid.question,
        )
        await _store_parts(revision, valid, conn)
    return await view_question(principal, revision)


async def set_archived(principal: Principal, question_id: str, *, archived: bool) -> QuestionView:
    """Archive (or restore) a question: archived, it leaves ``questions`` and takes no new
    sessions; sessions that use it carry on. Idempotent."""
    principal.require_staff()
    current = await _latest(principal, question_id)
    if (current.archived_at is not None) != archived:
        stamp = datetime.now(UTC) if archived else None
        changed = await Question.filter(id=current.id, is_latest=True).update(archived_at=stamp)
        if not changed:
            raise Conflict("the question changed meanwhile: read it again and retry")
        current.archived_at = stamp
    return await view_question(principal, current)


async def get_question(principal: Principal, question_id: str) -> QuestionView:
    """Staff: the latest revision. A candidate: their own session's revision, nothing else."""
    lineage = check.object_id("id", question_id)
    scope = Question.filter(lineage_id=lineage, account_id=principal.account_id)
    if principal.is_staff:
        question = await scope.get_or_none(is_latest=True)
    else:
        question = await scope.get_or_none(sessions__id=principal.session_id)
    if question is None:
        raise NotFound("question")
    return await view_question(principal, question)


async def question_for_new_session(principal: Principal, question_id: str) -> Question:
    """The revision a new session pins: the latest. An archived question takes none."""
    question = await _latest(principal, question_id, field="input.questionId")
    if question.archived_at is not None:
        raise Conflict("the question is archived: it takes no new sessions")
    return question


async def list_questions(
    principal: Principal, *, first: int, after: str | None, where: QuestionFilter
) -> Page[QuestionView]:
    """The account's questions (latest revisions), newest first by creation."""
    principal.require_staff()
    query = Question.filter(account_id=principal.account_id, is_latest=True)
    if not where.include_archived:
        query = query.filter(archived_at__isnull=True)
    if where.search is not None:
        term = check.text("search", where.search, max_length=MAX_SEARCH, allow_empty=True)
        if term:
            query = query.filter(Q(title__icontains=term) | Q(prompt__icontains=term))
    if where.tag is not None:
        query = query.filter(tags_json__contains=json.dumps(tag("tag", where.tag)))
    if where.difficulty is not None:
        query = query.filter(difficulty=where.difficulty)
    # Keyed on the lineage, not the row: a revision made while paging keeps its place.
    page = await paginate(query, first=first, after=after, tiebreak="lineage_id")
    views = await view_questions(principal, [question for _, question in page.items])
    return Page(
        items=[(cursor, view) for (cursor, _), view in zip(page.items, views, strict=True)],
        has_next_page=page.has_next_page,
        has_previous_page=page.has_previous_page,
        total_count=page.total_count,
    )
