"""Test runs in GraphQL: runTests, testRun, testRunProgress."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from datetime import datetime

import strawberry

from gql.context import Info, principal_of
from gql.types.event import SessionEventBatch
from gql.types.playback import SnapshotFile
from models.language import Language
from models.testrun import TestRun as TestRunModel
from models.testrun import TestRunStatus, Verdict
from resolvers.playback import snapshot_of_hashes
from resolvers.testruns import CaseResultView, view_results
from resolvers.watching import follow_test_run


@strawberry.type
class TestCaseResult:
    index: int
    hidden: bool
    passed: bool
    name: str | None = strawberry.field(description="Null for hidden cases, for candidates.")
    verdict: Verdict | None
    duration_ms: int | None
    actual: str | None = strawberry.field(
        description="Function mode: the returned JSON; program mode: stdout."
    )
    output: str | None = strawberry.field(description="What the solution printed (or stderr).")
    error: str | None
    signal: int | None

    @classmethod
    def of(cls, view: CaseResultView) -> TestCaseResult:
        return cls(
            index=view.index,
            hidden=view.hidden,
            passed=view.passed,
            name=view.name,
            verdict=view.verdict,
            duration_ms=view.duration_ms,
            actual=view.actual,
            output=view.output,
            error=view.error,
            signal=view.signal,
        )


@strawberry.type
class TestRun:
    id: strawberry.ID
    session_id: strawberry.ID
    language: Language
    status: TestRunStatus
    total: int
    passed: int
    failed: int
    duration_ms: int | None
    compile_error: str | None
    error: str | None
    created_at: datetime
    finished_at: datetime | None
    model: strawberry.Private[TestRunModel]

    @strawberry.field(
        description="The code that was tested: every file's path, size and sha256 "
        "(content through `blob(sessionId, sha256)`), by path."
    )
    async def code_snapshot(self) -> list[SnapshotFile]:
        files = await snapshot_of_hashes(self.model.session_id, dict(self.model.files))
        return [SnapshotFile.of(f) for f in files]

    @strawberry.field(description="Per-case results so far, in case order.")
    async def results(self, info: Info) -> list[TestCaseResult]:
        principal = await principal_of(info)
        rows = await info.context.loaders.case_results.load(self.model.id)
        return [TestCaseResult.of(v) for v in view_results(principal, rows)]

    @classmethod
    def of(cls, run: TestRunModel) -> TestRun:
        return cls(
            id=strawberry.ID(str(run.id)),
            session_id=strawberry.ID(str(run.session_id)),
            language=Language(run.language),
            status=run.status,
            total=run.total,
            passed=run.passed,
            failed=run.failed,
            duration_ms=run.duration_ms,
            compile_error=run.compile_error,
            error=run.error,
            created_at=run.created_at,
            finished_at=run.finished_at,
            model=run,
        )


@strawberry.type
class TestRunQuery:
    @strawberry.field
    async def test_run(self, info: Info, id: strawberry.ID) -> TestRun:
        return TestRun.of(await info.context.test_runs.get(await principal_of(info), id))


@strawberry.type
class TestRunMutation:
    @strawberry.mutation(
        description="Judge the workspace against every test case, in the background."
    )
    async def run_tests(
        self, info: Info, session_id: strawberry.ID, language: Language | None = None
    ) -> TestRun:
        run = await info.context.test_runs.start(
            await principal_of(info), session_id, language.value if language else None
        )
        return TestRun.of(run)


@strawberry.type
class TestRunSubscription:
    @strawberry.subscription(description="The run's events as they happen; completes when it ends.")
    async def test_run_progress(
        self, info: Info, run_id: strawberry.ID
    ) -> AsyncGenerator[SessionEventBatch, None]:
        principal = await principal_of(info)
        run = await info.context.test_runs.get(principal, run_id)
        async for batch in follow_test_run(info.context.live, principal, run):
            yield info.context.renders.batch(strawberry.ID(str(run.session_id)), batch)
