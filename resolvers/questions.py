"""Questions: create, list and read, with hidden test cases kept from candidates."""

from __future__ import annotations

import json
import math
import re
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from tortoise.transactions import in_transaction

from modal_app.base import InvalidPath
from modal_app.paths import normalize_workspace_path
from models.question import Question, QuestionLanguage, TestCase
from models.session import InterviewSession
from resolvers import validation as check
from resolvers.auth import Principal
from resolvers.errors import BadUserInput, NotFound
from resolvers.languages import language_info

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MAX_TEST_CASES = 200
MAX_STARTER_FILES = 50
MAX_CASE_JSON = 64 * 1024
MAX_JSON_DEPTH = 64


@dataclass(frozen=True, slots=True)
class StarterFile:
    path: str
    content: str


@dataclass(frozen=True, slots=True)
class LanguageSpec:
    language: str
    entrypoint: str
    solution_path: str
    starter_files: Sequence[StarterFile] = ()


@dataclass(frozen=True, slots=True)
class TestCaseSpec:
    name: str
    hidden: bool = False
    timeout_ms: int = 2000
    input: Any = None
    expected: Any = None
    has_expected: bool = False
    """``expected`` may legitimately be JSON null; this says whether it was given."""
    stdin: str | None = None
    expected_stdout: str | None = None


@dataclass(frozen=True, slots=True)
class QuestionSpec:
    title: str
    prompt: str
    languages: Sequence[LanguageSpec]
    test_cases: Sequence[TestCaseSpec]
    float_tolerance: float | None = None


@dataclass(frozen=True, slots=True)
class QuestionView:
    """A question as the caller may see it: candidates get visible cases only."""

    question: Question
    languages: list[QuestionLanguage]
    test_cases: list[TestCase]
    hidden_test_count: int
    total_test_count: int


def workspace_path(field_name: str, path: str) -> str:
    try:
        return normalize_workspace_path(path)
    except InvalidPath as exc:
        raise BadUserInput(field_name, str(exc)) from None


def _check_language(i: int, spec: LanguageSpec, max_file_bytes: int) -> dict[str, Any]:
    at = f"input.languages[{i}]"
    info = language_info(f"{at}.language", spec.language)
    if not _IDENTIFIER.match(spec.entrypoint):
        raise BadUserInput(f"{at}.entrypoint", "must be an identifier")
    solution = workspace_path(f"{at}.solutionPath", spec.solution_path)
    if not solution.endswith(info.extension):
        raise BadUserInput(f"{at}.solutionPath", f"must end with {info.extension}")
    if len(spec.starter_files) > MAX_STARTER_FILES:
        raise BadUserInput(f"{at}.starterFiles", f"at most {MAX_STARTER_FILES} files")
    files = []
    for j, starter in enumerate(spec.starter_files):
        path = workspace_path(f"{at}.starterFiles[{j}].path", starter.path)
        if len(starter.content.encode()) > max_file_bytes:
            raise BadUserInput(f"{at}.starterFiles[{j}].content", f"over {max_file_bytes} bytes")
        files.append({"path": path, "content": starter.content})
    return {
        "language": info.language.value,
        "entrypoint": spec.entrypoint,
        "solution_path": solution,
        "starter_files": files,
    }


def _storable(text: str) -> bool:
    # PostgreSQL's jsonb (and text) cannot hold NUL, and no UTF-8 encoder takes
    # an unpaired surrogate: refused here, on every database alike.
    return "\x00" not in text and not any("\ud800" <= ch <= "\udfff" for ch in text)


def _check_json(field: str, value: Any) -> None:
    """Every JSON value is accepted (strings included) except what no database stores
    losslessly: NaN/Infinity, NUL characters, unpaired surrogates, absurd nesting."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise BadUserInput(field, f"nested deeper than {MAX_JSON_DEPTH} levels")
        if isinstance(item, float) and not math.isfinite(item):
            raise BadUserInput(field, "numbers must be finite (no NaN or Infinity)")
        if isinstance(item, str) and not _storable(item):
            raise BadUserInput(field, "strings must not contain NUL or unpaired surrogates")
        if isinstance(item, dict):
            for key, child in item.items():
                if not isinstance(key, str) or not _storable(key):
                    raise BadUserInput(field, "object keys must be text without NUL")
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)


def _check_case(i: int, spec: TestCaseSpec) -> dict[str, Any]:
    at = f"input.testCases[{i}]"
    name = check.text(f"{at}.name", spec.name, max_length=200)
    check.int_range(f"{at}.timeoutMs", spec.timeout_ms, low=1, high=60_000)
    program_mode = spec.stdin is not None or spec.expected_stdout is not None
    if program_mode:
        if spec.input is not None or spec.has_expected:
            raise BadUserInput(at, "give either input/expected or stdin/expectedStdout, not both")
        if spec.expected_stdout is None:
            raise BadUserInput(f"{at}.expectedStdout", "is required with stdin")
        for text_field, text_value in (
            ("stdin", spec.stdin or ""),
            ("expectedStdout", spec.expected_stdout),
        ):
            if len(text_value) > MAX_CASE_JSON:
                raise BadUserInput(f"{at}.{text_field}", f"over {MAX_CASE_JSON} characters")
    else:
        if not isinstance(spec.input, list):
            raise BadUserInput(f"{at}.input", "must be a JSON list of arguments")
        if not spec.has_expected:
            raise BadUserInput(f"{at}.expected", "is required")
        for name_, value in (("input", spec.input), ("expected", spec.expected)):
            _check_json(f"{at}.{name_}", value)
            if len(json.dumps(value)) > MAX_CASE_JSON:
                raise BadUserInput(f"{at}.{name_}", f"over {MAX_CASE_JSON} bytes of JSON")
    return {
        "position": i,
        "name": name,
        "hidden": spec.hidden,
        "timeout_ms": spec.timeout_ms,
        "input": None if program_mode else spec.input,
        "expected": None if program_mode else spec.expected,
        "stdin": (spec.stdin or "") if program_mode else None,
        "expected_stdout": spec.expected_stdout if program_mode else None,
    }


async def create_question(
    principal: Principal, spec: QuestionSpec, *, max_file_bytes: int
) -> QuestionView:
    principal.require_staff()
    title = check.text("input.title", spec.title, max_length=200)
    prompt = check.text("input.prompt", spec.prompt, max_length=100_000)
    if not spec.languages:
        raise BadUserInput("input.languages", "at least one language is required")
    languages = [_check_language(i, s, max_file_bytes) for i, s in enumerate(spec.languages)]
    seen = [lang["language"] for lang in languages]
    if len(set(seen)) != len(seen):
        raise BadUserInput("input.languages", "each language may appear once")
    if not spec.test_cases:
        raise BadUserInput("input.testCases", "at least one test case is required")
    if len(spec.test_cases) > MAX_TEST_CASES:
        raise BadUserInput("input.testCases", f"at most {MAX_TEST_CASES} test cases")
    cases = [_check_case(i, s) for i, s in enumerate(spec.test_cases)]
    if len({case["expected_stdout"] is None for case in cases}) > 1:
        # One harness run judges a question: its cases share one mode.
        raise BadUserInput(
            "input.testCases", "use either input/expected or stdin/expectedStdout for every case"
        )
    if spec.float_tolerance is not None and not 0 <= spec.float_tolerance <= 1:
        raise BadUserInput("input.floatTolerance", "must be between 0 and 1")
    async with in_transaction() as conn:
        question = await Question.create(
            account_id=principal.account_id,
            title=title,
            prompt=prompt,
            float_tolerance=spec.float_tolerance,
            using_db=conn,
        )
        await QuestionLanguage.bulk_create(
            [QuestionLanguage(question=question, **lang) for lang in languages], using_db=conn
        )
        await TestCase.bulk_create(
            [TestCase(question=question, **case) for case in cases], using_db=conn
        )
    return await view_question(principal, question)


async def view_question(principal: Principal, question: Question) -> QuestionView:
    return (await view_questions(principal, [question]))[0]


async def view_questions(principal: Principal, questions: Sequence[Question]) -> list[QuestionView]:
    """Each question as the caller may see it, in two queries whatever their number."""
    ids = [q.id for q in questions]
    languages: dict[uuid.UUID, list[QuestionLanguage]] = defaultdict(list)
    for lang in await QuestionLanguage.filter(question_id__in=ids).order_by("id"):
        languages[lang.question_id].append(lang)
    cases: dict[uuid.UUID, list[TestCase]] = defaultdict(list)
    for case in await TestCase.filter(question_id__in=ids).order_by("position"):
        cases[case.question_id].append(case)
    return [
        QuestionView(
            question=q,
            languages=languages[q.id],
            test_cases=cases[q.id]
            if principal.is_staff
            else [c for c in cases[q.id] if not c.hidden],
            hidden_test_count=sum(1 for c in cases[q.id] if c.hidden),
            total_test_count=len(cases[q.id]),
        )
        for q in questions
    ]


async def get_question(principal: Principal, question_id: str) -> QuestionView:
    qid = check.object_id("id", question_id)
    question = await Question.get_or_none(id=qid, account_id=principal.account_id)
    if question is None:
        raise NotFound("question")
    if not principal.is_staff:
        # A candidate reaches only the question of their own session.
        owns = await InterviewSession.exists(id=principal.session_id, question_id=qid)
        if not owns:
            raise NotFound("question")
    return await view_question(principal, question)


async def list_questions(principal: Principal) -> list[QuestionView]:
    principal.require_staff()
    questions = await Question.filter(account_id=principal.account_id).order_by("-created_at")
    return [await view_question(principal, q) for q in questions]
