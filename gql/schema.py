"""The root types. Each field authenticates, calls one resolver, converts the result."""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from typing import Any, cast

import strawberry
from graphql import ExecutionResult, OperationDefinitionNode
from strawberry.extensions import AddValidationRules, MaxAliasesLimiter, QueryDepthLimiter
from strawberry.schema.schema import StrawberryGraphQLCoreExecutionContext
from strawberry.tools import merge_types

from gql.claude_ops import ClaudeMutation, ClaudeQuery, ClaudeSubscription
from gql.context import Context, Info, principal_of
from gql.errors import ApiSchema
from gql.observability import Observe
from gql.parsing import BoundedDocuments, DocumentLimits
from gql.playback_ops import PlaybackQuery
from gql.question_ops import QuestionMutation, QuestionQuery
from gql.scorecard_ops import ScorecardMutation, ScorecardQuery
from gql.subscriptions import Subscription
from gql.terminal_ops import TerminalMutation
from gql.testrun_ops import TestRunMutation, TestRunQuery, TestRunSubscription
from gql.types.account import (
    Account,
    ApiToken,
    CreateApiTokenInput,
    CreateApiTokenPayload,
    User,
    ViewerKind,
)
from gql.types.event import EVENT_TYPES, NoteEvent, Recording, SessionEventBatch, event_of
from gql.types.question import LanguageInfo
from gql.types.report import ReportMutation
from gql.types.session import (
    CreateSessionInput,
    CreateSessionPayload,
    InterviewSession,
    InterviewSessionConnection,
)
from gql.usage_ops import UsageQuery
from gql.webhook_ops import WebhookMutation, WebhookQuery
from gql.workspace_ops import WorkspaceMutation, WorkspaceQuery
from modal_app.base import SandboxError
from models.session import SessionStatus
from resolvers import accounts, notes, recordings, sessions
from resolvers.errors import SandboxUnavailable
from resolvers.languages import LANGUAGES

logger = logging.getLogger("interviewlm.schema")


@strawberry.type
class Viewer:
    kind: ViewerKind
    account: Account
    user: User | None
    session: InterviewSession | None = strawberry.field(
        description="For candidate tokens: the one session the token opens."
    )


@strawberry.type
class Query:
    @strawberry.field(description="Who the bearer token belongs to.")
    async def viewer(self, info: Info) -> Viewer:
        view = await accounts.viewer(await principal_of(info))
        return Viewer(
            kind=ViewerKind(view.principal.kind.value),
            account=Account.of(view.account),
            user=User.of(view.user) if view.user else None,
            session=InterviewSession.of(view.session) if view.session else None,
        )

    @strawberry.field
    async def session(self, info: Info, id: strawberry.ID) -> InterviewSession:
        model = await sessions.get_session(await principal_of(info), id)
        return InterviewSession.of(model)

    @strawberry.field(description="Newest first.")
    async def sessions(
        self,
        info: Info,
        *,
        first: int = 20,
        after: str | None = None,
        status: SessionStatus | None = None,
        candidate_email: str | None = None,
        external_id: str | None = None,
    ) -> InterviewSessionConnection:
        page = await sessions.list_sessions(
            await principal_of(info),
            first=first,
            after=after,
            where=sessions.SessionFilter(
                status=status, candidate_email=candidate_email, external_id=external_id
            ),
        )
        return InterviewSessionConnection.of(page)

    @strawberry.field(description="Stored events of a session after `afterSeq`, in order.")
    async def recording(
        self, info: Info, session_id: strawberry.ID, after_seq: int = 0, first: int = 500
    ) -> Recording:
        page = await recordings.read_recording(
            await principal_of(info),
            session_id,
            after_seq=after_seq,
            first=first,
            log=info.context.log,
        )
        return Recording(
            session_id=strawberry.ID(page.session_id),
            events=[event_of(e) for e in page.events],
            last_seq=page.last_seq,
            has_more=page.has_more,
        )

    @strawberry.field
    def languages(self) -> list[LanguageInfo]:
        return [LanguageInfo.of(info) for info in LANGUAGES]

    @strawberry.field(description="The account's API tokens (interviewers only).")
    async def api_tokens(self, info: Info) -> list[ApiToken]:
        return [ApiToken.of(t) for t in await accounts.list_api_tokens(await principal_of(info))]


@strawberry.type
class Mutation:
    @strawberry.mutation(description="Schedule an interview; returns the candidate's token.")
    async def create_session(self, info: Info, input: CreateSessionInput) -> CreateSessionPayload:
        settings = info.context.settings
        created = await sessions.create_session(
            await principal_of(info),
            input.to_spec(),
            log=info.context.log,
            public_url=settings.public_url,
            token_ttl=timedelta(seconds=settings.candidate_token_ttl_s),
        )
        return CreateSessionPayload.of(created)

    @strawberry.mutation(
        description="Finish a session (COMPLETED), or cancel it (CANCELLED). Its sandbox"
        " stops; its candidate keeps read access until the token expires, and can change"
        " nothing more (CONFLICT)."
    )
    async def end_session(
        self, info: Info, session_id: strawberry.ID, cancel: bool = False
    ) -> InterviewSession:
        model = await sessions.end_session(
            await principal_of(info), session_id, cancel=cancel, log=info.context.log
        )
        await _stop_sandbox(info, model.id)
        info.context.sandboxes.session_ended(model)  # to S3, in the background
        return InterviewSession.of(model)

    @strawberry.mutation(description="Create an API token; the secret is in the payload, once.")
    async def create_api_token(
        self, info: Info, input: CreateApiTokenInput
    ) -> CreateApiTokenPayload:
        created = await accounts.create_api_token(
            await principal_of(info),
            name=input.name,
            scope=input.scope.value,
            expires_at=input.expires_at,
        )
        return CreateApiTokenPayload.of(created)

    @strawberry.mutation(
        description="An interviewer's note, in the recording (hidden from candidates)."
    )
    async def add_note(self, info: Info, session_id: strawberry.ID, text: str) -> NoteEvent:
        record = await notes.add_note(
            await principal_of(info), session_id, text, log=info.context.log
        )
        # add_note appends a note.added, whose GraphQL type is NoteEvent.
        return cast(NoteEvent, event_of(record))

    @strawberry.mutation(
        description="Revoke at once: requests with it are refused and its open WebSockets"
        " closed, on every replica."
    )
    async def revoke_api_token(self, info: Info, id: strawberry.ID) -> ApiToken:
        revoked = await accounts.revoke_api_token(
            await principal_of(info), id, revocations=info.context.services.revocations
        )
        return ApiToken.of(revoked)


async def _stop_sandbox(info: Info, session_id: uuid.UUID) -> None:
    """An ended session's candidate changes nothing more: not even through a process
    left running in the sandbox. Its final workspace is captured as the sandbox stops.
    A sandbox held by another replica is stopped by that replica's reaper."""
    sandboxes = info.context.sandboxes
    record = await sandboxes.live(session_id)
    if record is None or record.owner != sandboxes.owner:
        return
    try:
        await sandboxes.stop(record, reason="the session ended")
    except (SandboxError, SandboxUnavailable):
        logger.warning("stopping the sandbox of ended session %s failed", session_id)


RootQuery = merge_types(
    "Query",
    (
        Query,
        QuestionQuery,
        WorkspaceQuery,
        TestRunQuery,
        ClaudeQuery,
        PlaybackQuery,
        WebhookQuery,
        ScorecardQuery,
        UsageQuery,
    ),
)
RootMutation = merge_types(
    "Mutation",
    (
        Mutation,
        QuestionMutation,
        WorkspaceMutation,
        TerminalMutation,
        TestRunMutation,
        ClaudeMutation,
        WebhookMutation,
        ReportMutation,
        ScorecardMutation,
    ),
)
RootSubscription = merge_types(
    "Subscription", (Subscription, TestRunSubscription, ClaudeSubscription)
)


class PerEventMemoExecutionContext(StrawberryGraphQLCoreExecutionContext):
    """A fresh sub-field memo for each subscription event.

    graphql-core 3.3.2 gives every per-event executor the subscription's own
    memo, keyed by the identity of per-event lists: it never hits and grows by
    two entries per event per subscription until the subscription ends. Over an
    interview with many watchers that is hundreds of thousands of objects and
    full garbage collections freezing the event loop for up to ~200 ms
    (measured with bench/stream.py). The memo still serves within one event.
    """

    def build_per_event_executor(self, payload: Any) -> Any:
        executor = super().build_per_event_executor(payload)
        executor._relevant_sub_fields = {}
        return executor

    def execute_operation(self, serially: bool | None = None) -> Any:
        """Render one event batch once for every watcher asking the same thing.

        Watchers given the same ``SessionEventBatch`` object (same events, same
        visibility: see ``SharedRenders.batch``) with the same document and
        variables get the same result; its fields are plain data, independent
        of the caller. Anything else executes as usual. The results are kept by
        the app (``Context.renders``), not by this module.
        """
        payload = self.root_value
        context = self.context_value
        if not isinstance(payload, SessionEventBatch) or not isinstance(context, Context):
            return super().execute_operation(serially)
        results = context.services.renders.results
        key = (_document_key(self.operation), repr(self.variable_values))
        hit = results.get(payload, key)
        if hit is not None:
            return hit
        result = super().execute_operation(serially)
        if isinstance(result, ExecutionResult) and not result.errors:
            results.put(payload, result, key)
        return result


def _document_key(operation: OperationDefinitionNode) -> str:
    source = operation.loc.source.body if operation.loc else None
    return source if source is not None else str(id(operation))


def build_schema(
    *, max_depth: int = 12, max_aliases: int = 30, limits: DocumentLimits | None = None
) -> ApiSchema:
    limits = limits or DocumentLimits()
    # The limiters' rule classes, built once: the limiter extensions would build two new
    # classes for every operation (4.5 KB each subscription keeps: bench/scale.py).
    rules = [
        *QueryDepthLimiter(max_depth=max_depth).validation_rules,
        *MaxAliasesLimiter(max_alias_count=max_aliases).validation_rules,
    ]
    return ApiSchema(
        query=RootQuery,
        mutation=RootMutation,
        subscription=RootSubscription,
        execution_context_class=PerEventMemoExecutionContext,
        types=EVENT_TYPES,
        extensions=[
            # Outermost: it sees every operation, refused ones included (gql.observability).
            Observe,
            lambda: BoundedDocuments(limits),
            lambda: AddValidationRules(rules),
        ],
    )
