"""What a question is made of, and the checks that make a ``QuestionSpec`` storable.

Shared by ``createQuestion`` and ``updateQuestion`` (which takes the same input and
stores it as a new revision).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from modal_app.base import InvalidPath
from modal_app.paths import normalize_workspace_path
from models.question import Difficulty
from resolvers import validation as check
from resolvers.errors import BadUserInput
from resolvers.languages import language_info
from resolvers.s3sync import check_prefix
from resolvers.sandbox_config import SandboxConfig

_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,99}$")
MAX_TEST_CASES = 200
MAX_STARTER_FILES = 50
MAX_CASE_JSON = 64 * 1024
MAX_JSON_DEPTH = 64
MAX_TAGS = 20
# Lower-case words such as "arrays", "dynamic programming", "c++", "system-design".
# Never a quote or backslash: models.question relies on it to filter by tag.
_TAG = re.compile(r"^[a-z0-9+#./_-]+(?: [a-z0-9+#./_-]+)*$")
MAX_TAG_LENGTH = 40


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
    tags: Sequence[str] = ()
    difficulty: Difficulty | None = None
    environment: SandboxConfig | None = None
    """Already checked (``sandbox_config.check_config``): it needs the server's limits."""
    starter_s3_prefix: str | None = None


@dataclass(frozen=True, slots=True)
class ValidQuestion:
    """A ``QuestionSpec`` that passed every check, as the rows to store."""

    question: dict[str, Any]
    languages: list[dict[str, Any]]
    test_cases: list[dict[str, Any]]


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


def tag(field: str, value: str) -> str:
    """A tag as stored: lower case, inner runs of spaces made one."""
    normalized = " ".join(check.text(field, value, max_length=MAX_TAG_LENGTH).lower().split())
    if not _TAG.match(normalized):
        raise BadUserInput(
            field, "letters, digits, spaces and + # . / _ - only (e.g. 'arrays', 'c++')"
        )
    return normalized


def _tags(values: Sequence[str]) -> list[str]:
    if len(values) > MAX_TAGS:
        raise BadUserInput("input.tags", f"at most {MAX_TAGS} tags")
    tags = [tag(f"input.tags[{i}]", value) for i, value in enumerate(values)]
    return list(dict.fromkeys(tags))  # duplicates dropped, first order kept


def validate(spec: QuestionSpec, *, max_file_bytes: int) -> ValidQuestion:
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
    question = {
        "title": title,
        "prompt": prompt,
        "float_tolerance": spec.float_tolerance,
        "difficulty": spec.difficulty,
        "tags_json": json.dumps(_tags(spec.tags)),
        "environment_json": spec.environment.to_json() if spec.environment else None,
        "starter_s3_prefix": check_prefix("input.starterS3Prefix", spec.starter_s3_prefix),
    }
    return ValidQuestion(question=question, languages=languages, test_cases=cases)
