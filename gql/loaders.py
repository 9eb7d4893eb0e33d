"""Per-request batch loaders for the fields of ``InterviewSession``.

A page of sessions asking for ``testRuns``, ``claudeRuns``, ``terminals``, ``notes``,
``lastTestRun`` (and their runs' ``results``), ``scorecards``, ``sandbox`` and ``question`` would
otherwise query once per session (or run) per field. Each field instead asks its
loader for its session, and the loader answers the whole page with one call of
``resolvers.timeline`` (one SQL query per field; ``testRuns`` and ``lastTestRun``
share theirs). See that module for why whole sessions are loaded and sliced here
rather than limited in SQL.

The loaders live in the request's context (``Context.loaders``), so nothing is shared
between callers. They do not cache: a WebSocket keeps one context for all the
operations of its connection, and a cached run would go stale between them; batching
happens within one execution step, which is all a page needs.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from strawberry.dataloader import DataLoader

from models.claude import ClaudeRun
from models.sandbox import SandboxRecord
from models.terminal import TerminalRecord
from models.testrun import TestCaseResult, TestRun
from resolvers import timeline
from resolvers.auth import Principal
from resolvers.events import EventRecord
from resolvers.questions import QuestionView
from resolvers.scorecards import ScorecardView, scorecards_by_session

V = TypeVar("V")
PrincipalSource = Callable[[], Awaitable[Principal]]
BatchQuery = Callable[[Principal, Sequence[uuid.UUID]], Awaitable[Mapping[uuid.UUID, V]]]


def _loader(
    principal: PrincipalSource, query: BatchQuery[V], missing: Callable[[], V]
) -> DataLoader[uuid.UUID, V]:
    async def load(keys: list[uuid.UUID]) -> list[V]:
        found = await query(await principal(), keys)
        return [found[key] if key in found else missing() for key in keys]

    return DataLoader(load_fn=load, cache=False)


def _none() -> None:
    return None


@dataclass(frozen=True, slots=True)
class SessionLoaders:
    """One loader per batched field, keyed by session id (the question's by its id)."""

    test_runs: DataLoader[uuid.UUID, list[TestRun]]
    case_results: DataLoader[uuid.UUID, list[TestCaseResult]]
    """Keyed by test run: ``TestRun.results`` of every run on the page, in one query."""
    claude_runs: DataLoader[uuid.UUID, list[ClaudeRun]]
    terminals: DataLoader[uuid.UUID, list[TerminalRecord]]
    notes: DataLoader[uuid.UUID, list[EventRecord]]
    sandbox: DataLoader[uuid.UUID, SandboxRecord | None]
    question: DataLoader[uuid.UUID, QuestionView | None]
    scorecards: DataLoader[uuid.UUID, list[ScorecardView]]

    @classmethod
    def of(cls, principal: PrincipalSource) -> SessionLoaders:
        """``principal`` is awaited at each batch: the context authenticates lazily."""
        return cls(
            test_runs=_loader(principal, timeline.test_runs, list),
            case_results=_loader(principal, timeline.case_results, list),
            claude_runs=_loader(principal, timeline.claude_runs, list),
            terminals=_loader(principal, timeline.terminals, list),
            notes=_loader(principal, timeline.notes, list),
            sandbox=_loader(principal, timeline.latest_sandboxes, _none),
            question=_loader(principal, timeline.questions, _none),
            scorecards=_loader(principal, scorecards_by_session, list),
        )
