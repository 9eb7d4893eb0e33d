"""Test runs: snapshot the code, run every case once in the sandbox, judge, record.

``runTests`` answers at once with a QUEUED run; the run proceeds in the
background on the replica that accepted it. A second run of the same session
while one is queued or running is a CONFLICT (a unique key in the database,
so it holds across replicas). The log gets ``testrun.started`` (with the
hashes of the files tested), one ``testrun.case`` per case as it finishes, and
``testrun.finished`` (typed in resolvers.event_kinds). Of a hidden case's
event a candidate sees only run, index and passed (``TestRunCase.for_candidate``).
The run's lifecycle (claim, task, result writer, shutdown) is resolvers.background.

Hidden inputs never reach the candidate (issue 9): the harness runs as a
private exec with the hidden cases last (``modal_app.harness.runner``); their
results are recorded together once the harness has finished, so a
candidate cannot time one hidden case from its event; a candidate sees of
them only ``passed`` (interviewers see everything). A run's ``error`` is one
of a few fixed sentences, never an exception's text: the details go to the
server's log.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from typing import Any

from tortoise.transactions import in_transaction

from modal_app.base import (
    QuotaExceeded,
    SandboxError,
    SandboxNotFound,
    SandboxTerminated,
)
from modal_app.harness.protocol import CaseInput, CaseOutcome, HarnessRun
from modal_app.harness.runner import run_harness
from modal_app.local.private import SnapshotTooLarge
from models.language import Language
from models.question import Question, QuestionLanguage, TestCase
from models.session import InterviewSession
from models.testrun import TestCaseResult, TestRun, TestRunStatus, Verdict
from resolvers import metrics
from resolvers import validation as check
from resolvers.auth import Principal
from resolvers.background import BackgroundRuns, result_writer
from resolvers.errors import BadUserInput, NotFound, SandboxUnavailable
from resolvers.event_kinds import TestRunCase, TestRunFinished, TestRunStarted
from resolvers.events import without_nul
from resolvers.judging import judge
from resolvers.languages import language_info
from resolvers.sandboxes import Sandboxes
from resolvers.sessions import require_session_access
from resolvers.webhooks.events import enqueue_test_run_finished

logger = logging.getLogger("interviewlm.testruns")
OUTPUT_LIMIT = 64 * 1024
# Beyond the run's own time limit, how long the harness may take to report it.
HARNESS_GRACE_S = 30
Judged = tuple[TestCase, int, Verdict, CaseOutcome | None]


@dataclass(frozen=True, slots=True)
class CaseResultView:
    """One case's result as the caller may see it: of a hidden case, a candidate
    learns only whether it passed."""

    index: int
    hidden: bool
    passed: bool
    name: str | None = None
    verdict: Verdict | None = None
    duration_ms: int | None = None
    actual: str | None = None
    output: str | None = None
    error: str | None = None
    signal: int | None = None


def view_results(principal: Principal, results: list[TestCaseResult]) -> list[CaseResultView]:
    views = []
    for r in results:
        passed = r.verdict is Verdict.PASSED
        if r.hidden and not principal.is_staff:
            views.append(CaseResultView(index=r.position, hidden=True, passed=passed))
            continue
        views.append(
            CaseResultView(
                index=r.position,
                hidden=r.hidden,
                passed=passed,
                name=r.name,
                verdict=r.verdict,
                duration_ms=r.duration_ms,
                actual=r.actual,
                output=r.output,
                error=r.error,
                signal=r.signal,
            )
        )
    return views


class TestRuns:
    __test__ = False

    def __init__(self, sandboxes: Sandboxes, *, run_timeout_s: float = 300) -> None:
        self.sandboxes = sandboxes
        self.log = sandboxes.log
        self.run_timeout_s = run_timeout_s
        self.runs = BackgroundRuns("test")

    async def start(self, principal: Principal, session_id: str, language: str | None) -> TestRun:
        session, sandbox = await self.sandboxes.require_live(principal, session_id)
        lang = session.language
        if language is not None:
            lang = language_info("language", language).language.value
        if not await QuestionLanguage.exists(question_id=session.question_id, language=lang):
            raise BadUserInput("language", "the question has no entry point for this language")
        run = await self.runs.claim(
            TestRun,
            "a test run of this session is already in progress",
            session_id=session.id,
            language=lang,
            live_key=session.id,
            owner=self.sandboxes.owner,
            log_seq=await self.log.last_seq(session.id),
        )
        release = partial(self._finish, run, status=TestRunStatus.ERROR, error=ERROR_START)
        async with self.runs.launching(release):
            # Thorough: the snapshot names the code tested, whatever mtimes say.
            await self.sandboxes.sync_workspace(sandbox, thorough=True)
            current = await self.sandboxes.files.current(session.id)
            run.files = {path: f.sha256 for path, f in current.items()}
            await run.save(update_fields=["files"])
        self.runs.spawn(self._execute(run, sandbox.backend_id or ""))
        return run

    async def _execute(self, run: TestRun, backend_id: str) -> None:
        try:
            await self._run(run, backend_id)
        except Exception:
            logger.exception("test run %s failed", run.id)
            await self._finish(run, status=TestRunStatus.ERROR, error=ERROR_INTERNAL)

    async def _run(self, run: TestRun, backend_id: str) -> None:
        session_id = run.session_id
        question = await Question.get(sessions__id=session_id)
        spec = await QuestionLanguage.get(question_id=question.id, language=run.language)
        cases = await TestCase.filter(question_id=question.id).order_by("position")
        started = datetime.now(UTC)
        await TestRun.filter(id=run.id).update(
            status=TestRunStatus.RUNNING, started_at=started, total=len(cases)
        )
        await self.log.append(
            session_id,
            TestRunStarted(str(run.id), language=run.language, total=len(cases), files=run.files),
        )
        tally = {"passed": 0, "failed": 0}
        # Hidden results wait for the end of the run: logged one by one as
        # they finish, their events' times would say how long each one took.
        deferred: list[Judged] = []

        inputs = [
            CaseInput(
                index=i, args=c.input, stdin=c.stdin, timeout_ms=c.timeout_ms, hidden=c.hidden
            )
            if c.expected_stdout is None
            else CaseInput(index=i, stdin=c.stdin or "", timeout_ms=c.timeout_ms, hidden=c.hidden)
            for i, c in enumerate(cases)
        ]
        failure: SandboxError | SandboxUnavailable | None = None
        # Judged cases are recorded by a writer task in batches, so a fast
        # harness never waits for the database between cases. However the
        # harness ends (an exception included), the writer is told and awaited.
        async with result_writer(partial(self._write_results, run)) as queue:

            async def on_outcome(outcome: CaseOutcome) -> None:
                case = cases[outcome.index]
                verdict = judge(outcome, case, tolerance=question.float_tolerance)
                judged = (case, outcome.index, verdict, outcome)
                if case.hidden:
                    deferred.append(judged)
                else:
                    queue.put_nowait(judged)
                tally["passed" if verdict is Verdict.PASSED else "failed"] += 1

            try:
                result = await self._harness(run, backend_id, spec, inputs, on_outcome)
            except (SandboxError, SandboxUnavailable) as exc:
                logger.warning("test run %s: the sandbox failed: %r", run.id, exc)
                failure = exc
            else:
                for judged in sorted(deferred, key=lambda item: item[1]):
                    queue.put_nowait(judged)
                if result.compile_error is not None:
                    for i, case in enumerate(cases):
                        queue.put_nowait((case, i, Verdict.COMPILE_ERROR, None))
                    tally["failed"] = len(cases)
        if failure is not None:
            await self._finish(run, status=TestRunStatus.ERROR, error=sandbox_error(failure))
            return
        if result.harness_error is not None:
            # May quote the sandbox's stderr: the log gets it, the run a fixed sentence.
            logger.warning("test run %s: %s", run.id, result.harness_error)
        await self._finish(
            run,
            status=TestRunStatus.FINISHED,
            compile_error=result.compile_error,
            passed=tally["passed"],
            failed=tally["failed"],
            error=run_error(result),
            duration_ms=int((datetime.now(UTC) - started).total_seconds() * 1000),
        )

    async def _harness(
        self,
        run: TestRun,
        backend_id: str,
        spec: QuestionLanguage,
        inputs: list[CaseInput],
        on_outcome: Callable[[CaseOutcome], Awaitable[None]],
    ) -> HarnessRun:
        # Through the breaker like every backend call (scoped to this sandbox).
        return await self.sandboxes.call(
            partial(
                run_harness,
                self.sandboxes.backend,
                backend_id,
                language=Language(run.language),
                entrypoint=spec.entrypoint,
                solution_path=spec.solution_path,
                cases=inputs,
                on_outcome=on_outcome,
                total_timeout_s=self.run_timeout_s,
            ),
            deadline_s=self.run_timeout_s + HARNESS_GRACE_S,
            scope=backend_id,
            long_running=True,
        )

    async def _record(self, run: TestRun, judged: list[Judged]) -> None:
        """Store a batch of judged cases and log them: one insert, one log append."""
        rows: list[TestCaseResult] = []
        items: list[TestRunCase] = []
        for case, index, verdict, outcome in judged:
            row, payload = _result_row(run, case, index, verdict, outcome)
            rows.append(row)
            items.append(payload)
        await TestCaseResult.bulk_create(rows)
        await self.log.append_many(run.session_id, items)

    async def _write_results(self, run: TestRun, queue: asyncio.Queue[Judged | None]) -> None:
        done = False
        while not done:
            batch = [await queue.get()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            done = batch[-1] is None
            judged = [item for item in batch if item is not None]
            if judged:
                await self._record(run, judged)

    async def _finish(self, run: TestRun, *, status: TestRunStatus, **fields: Any) -> None:
        now = datetime.now(UTC)
        async with in_transaction() as conn:
            # Conditional: a run another replica ended (this one was declared lost,
            # resolvers.leases) is not finished, nor announced, a second time.
            changed = await (
                TestRun.filter(id=run.id, live_key__isnull=False)
                .using_db(conn)
                .update(status=status, live_key=None, finished_at=now, **fields)
            )
            if not changed:
                return
            final = await TestRun.filter(id=run.id).using_db(conn).get()
            session = await InterviewSession.filter(id=run.session_id).using_db(conn).get()
            await enqueue_test_run_finished(session, final, using_db=conn)
        metrics.observe_test_run(final)
        await self.log.append(
            run.session_id,
            TestRunFinished(
                str(run.id),
                status=status,
                passed=final.passed,
                failed=final.failed,
                total=final.total,
                duration_ms=final.duration_ms,
                compile_error=_cap(final.compile_error, 4000),
                error=final.error,
            ),
        )

    async def get(self, principal: Principal, run_id: str) -> TestRun:
        rid = check.object_id("id", run_id)
        run = await TestRun.get_or_none(id=rid)
        if run is None:
            raise NotFound("test run")
        await require_session_access(principal, run.session_id, kind="test run")
        return run

    async def close(self) -> None:
        await self.runs.close()


def _result_row(
    run: TestRun, case: TestCase, index: int, verdict: Verdict, outcome: CaseOutcome | None
) -> tuple[TestCaseResult, TestRunCase]:
    error = actual = printed = None
    if outcome is not None:
        if outcome.error:
            error = outcome.error + (f"\n{outcome.traceback}" if outcome.traceback else "")
        program = case.expected_stdout is not None
        actual = outcome.stdout if program else outcome.value_json
        printed = outcome.stderr if program else outcome.stdout
    duration = outcome.duration_ms if outcome else None
    row = TestCaseResult(
        run_id=run.id,
        case_id=case.id,
        position=index,
        name=case.name,
        hidden=case.hidden,
        verdict=verdict,
        duration_ms=duration,
        actual=_cap(actual),
        output=_cap(printed),
        error=_cap(error),
        signal=outcome.signal if outcome else None,
    )
    # A hidden case's payload is whole: what a candidate sees of it is the
    # payload's own business (TestRunCase.for_candidate).
    payload = TestRunCase(
        str(run.id),
        index,
        passed=verdict is Verdict.PASSED,
        hidden=case.hidden,
        name=case.name,
        verdict=verdict,
        duration_ms=duration,
        error=_cap(error, 2000),
    )
    return row, payload


ERROR_START = "the test run could not start; please run the tests again"
ERROR_INTERNAL = "the test run failed because of an internal error; please run the tests again"
ERROR_TIME_LIMIT = "the test run reached its time limit; cases not run by then failed"
ERROR_HARNESS = "the test run stopped unexpectedly; cases not run by then failed"


def sandbox_error(exc: SandboxError | SandboxUnavailable) -> str:
    """What a client is told when the sandbox could not run the tests (no internals)."""
    if isinstance(exc, SandboxUnavailable):
        return "the sandbox service is unavailable; please run the tests again in a few seconds"
    if isinstance(exc, SandboxTerminated | SandboxNotFound):
        return "the sandbox has ended; start it again to run the tests"
    if isinstance(exc, QuotaExceeded):
        return "the sandbox is at its process limit; stop some processes and try again"
    if isinstance(exc, SnapshotTooLarge):
        return "the workspace is too large to test; delete some files and try again"
    return "the sandbox could not run the tests; please try again"


def run_error(result: HarnessRun) -> str | None:
    if result.harness_error is None:
        return None
    return ERROR_TIME_LIMIT if result.timed_out else ERROR_HARNESS


def _cap(text: str | None, limit: int = OUTPUT_LIMIT) -> str | None:
    if text is None:
        return None
    text = without_nul(text)
    return text if len(text) <= limit else text[:limit] + "\n[truncated]"
