"""A session's timeline -- its test runs (and their case results), Claude runs,
terminals, notes, sandbox and question -- loaded for many sessions at once.

Each function takes the ids of a page of sessions and answers in one SQL query for
all of them (the question in three), grouped by session: the GraphQL layer's batch
loaders (gql.loaders) call them once per field per page, so a page of 20 sessions
costs the same number of queries as a page of one.

Every row of a session is loaded and the caller slices (``pagination.page_of``):
an interview makes tens of runs and a handful of terminals and sandboxes, so a page
of sessions is a few hundred rows, and one plain query works the same on SQLite and
PostgreSQL where a per-session ``LIMIT`` would need a window function per dialect.
``totalCount`` then comes from the same rows.

Every query is scoped by the caller: the sessions of their account, and for a
candidate only their own session, whatever ids are asked for (the loaders are
reached through sessions already checked, this keeps it so if that ever changes).
Notes pass through ``visibility.visible`` like the recording: candidates get none.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, TypeVar

from tortoise.expressions import Q

from models.claude import ClaudeRun
from models.event import Event
from models.question import Question
from models.sandbox import SandboxRecord
from models.terminal import TerminalRecord, TerminalState
from models.testrun import TestCaseResult, TestRun
from resolvers.auth import Principal
from resolvers.event_kinds import NoteAdded
from resolvers.events import EventRecord
from resolvers.questions import QuestionView, view_questions
from resolvers.visibility import visible

R = TypeVar("R")
BySession = dict[uuid.UUID, list[R]]


def _reachable(principal: Principal, via: str = "") -> Q:
    """Rows whose session (reached through the relation path ``via``) the caller may
    see: their account's, and for a candidate their own session only."""
    scope: dict[str, Any] = {f"{via}session__account_id": principal.account_id}
    if not principal.is_staff:
        scope[f"{via}session_id"] = principal.session_id
    return Q(**scope)


def session_scope(principal: Principal, session_ids: Iterable[uuid.UUID]) -> Q:
    """Rows of these sessions that the caller may reach (models with a ``session`` FK)."""
    return Q(_reachable(principal), session_id__in=set(session_ids))


def _grouped(rows: Iterable[Any]) -> BySession[Any]:
    grouped: BySession[Any] = defaultdict(list)
    for row in rows:
        grouped[row.session_id].append(row)
    return grouped


async def test_runs(principal: Principal, session_ids: Sequence[uuid.UUID]) -> BySession[TestRun]:
    """Newest first."""
    scope = session_scope(principal, session_ids)
    return _grouped(await TestRun.filter(scope).order_by("-created_at", "-id"))


async def case_results(
    principal: Principal, run_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, list[TestCaseResult]]:
    """Each test run's case results, in case order (keyed by run, not by session:
    ``results`` is asked of every run of a page of sessions)."""
    scope = Q(_reachable(principal, via="run__"), run_id__in=set(run_ids))
    grouped: dict[uuid.UUID, list[TestCaseResult]] = defaultdict(list)
    for row in await TestCaseResult.filter(scope).order_by("run_id", "position"):
        grouped[row.run_id].append(row)
    return grouped


async def claude_runs(
    principal: Principal, session_ids: Sequence[uuid.UUID]
) -> BySession[ClaudeRun]:
    """Newest first."""
    scope = session_scope(principal, session_ids)
    return _grouped(await ClaudeRun.filter(scope).order_by("-created_at", "-id"))


async def terminals(
    principal: Principal, session_ids: Sequence[uuid.UUID]
) -> BySession[TerminalRecord]:
    """Open ones first (the one a reloaded frontend reattaches to), then newest first."""
    rows = await TerminalRecord.filter(session_scope(principal, session_ids)).order_by(
        "-created_at", "-id"
    )
    # A stable sort keeps newest-first within each state.
    return _grouped(sorted(rows, key=lambda t: t.state is not TerminalState.OPEN))


async def latest_sandboxes(
    principal: Principal, session_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, SandboxRecord]:
    """Each session's current (or last) sandbox, as ``Sandboxes.latest``."""
    scope = session_scope(principal, session_ids)
    rows = await SandboxRecord.filter(scope).order_by("-created_at")
    return {sid: records[0] for sid, records in _grouped(rows).items()}


async def notes(principal: Principal, session_ids: Sequence[uuid.UUID]) -> BySession[EventRecord]:
    """The ``note.added`` events, oldest first (as in the recording), as the caller may
    see them: candidates see no note (``visibility``), so they get an empty list, as in
    their recording -- an error would break a query shared with staff, and say that
    notes exist."""
    rows = await Event.filter(session_scope(principal, session_ids), type=NoteAdded.KIND)
    records = [
        EventRecord.stored(r.session_id, r.seq, r.type, r.at, r.payload)
        for r in sorted(rows, key=lambda r: (r.session_id, r.seq))
    ]
    return _grouped(shown for r in records if (shown := visible(principal, r)) is not None)


async def questions(
    principal: Principal, question_ids: Sequence[uuid.UUID]
) -> dict[uuid.UUID, QuestionView]:
    """Questions of the caller's account, as ``view_questions`` shows them; a candidate
    reaches only the question of their own session."""
    query = Question.filter(id__in=set(question_ids), account_id=principal.account_id)
    if not principal.is_staff:
        query = query.filter(sessions__id=principal.session_id)
    views = await view_questions(principal, await query)
    return {view.question.id: view for view in views}
