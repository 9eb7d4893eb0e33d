from __future__ import annotations

from datetime import datetime

import strawberry
from strawberry.scalars import JSON

from gql.types.sandbox_config import SandboxConfigInput, SandboxEnvironment
from models.language import Language
from models.question import Difficulty
from resolvers.languages import LanguageInfo as LanguageInfoData
from resolvers.question_specs import LanguageSpec, QuestionSpec, StarterFile, TestCaseSpec
from resolvers.questions import QuestionView
from resolvers.sandbox_config import ConfigLimits, SandboxConfig

strawberry.enum(Language, name="Language")
strawberry.enum(Difficulty, name="Difficulty")


@strawberry.type
class LanguageInfo:
    id: Language
    name: str
    file_extension: str

    @classmethod
    def of(cls, info: LanguageInfoData) -> LanguageInfo:
        return cls(id=info.language, name=info.name, file_extension=info.extension)


@strawberry.type(name="StarterFile")
class StarterFileType:
    path: str
    content: str


@strawberry.type
class QuestionLanguage:
    language: Language
    entrypoint: str
    solution_path: str
    starter_files: list[StarterFileType]


@strawberry.type
class TestCase:
    id: strawberry.ID
    name: str
    hidden: bool
    timeout_ms: int
    input: JSON | None = strawberry.field(description="Function mode: positional arguments.")
    expected: JSON | None = strawberry.field(
        description="Function mode: the return value expected."
    )
    stdin: str | None
    expected_stdout: str | None


@strawberry.type(
    description="One revision of a question. `id` stays the same across revisions; a"
    " session's question is the revision the session started with."
)
class Question:
    id: strawberry.ID
    revision: int = strawberry.field(description="1 when created; each update adds one.")
    title: str
    prompt: str = strawberry.field(description="Markdown.")
    float_tolerance: float | None
    tags: list[str]
    difficulty: Difficulty | None
    environment: SandboxEnvironment | None = strawberry.field(
        description="The sandbox's default configuration (startSandbox's `config` goes over it)."
    )
    starter_s3_prefix: str | None = strawberry.field(
        description="Starter files' S3 prefix, relative to the account's area of the bucket."
    )
    archived_at: datetime | None = strawberry.field(
        description="Set while archived: out of `questions` by default, no new sessions."
    )
    languages: list[QuestionLanguage]
    test_cases: list[TestCase] = strawberry.field(
        description="Every case for interviewers and ATS; only visible ones for candidates."
    )
    hidden_test_count: int
    total_test_count: int
    created_at: datetime = strawberry.field(description="When the question was created.")
    updated_at: datetime = strawberry.field(description="When this revision was made.")

    @classmethod
    def of(cls, view: QuestionView) -> Question:
        q = view.question
        return cls(
            id=strawberry.ID(str(q.lineage_id)),
            revision=q.revision,
            title=q.title,
            prompt=q.prompt,
            float_tolerance=q.float_tolerance,
            tags=q.tags,
            difficulty=q.difficulty,
            environment=(
                SandboxEnvironment.of(SandboxConfig.from_json(q.environment_json))
                if q.environment_json
                else None
            ),
            starter_s3_prefix=q.starter_s3_prefix if view.for_staff else None,
            archived_at=q.archived_at,
            languages=[
                QuestionLanguage(
                    language=Language(lang.language),
                    entrypoint=lang.entrypoint,
                    solution_path=lang.solution_path,
                    starter_files=[StarterFileType(**f) for f in lang.starter_files],
                )
                for lang in view.languages
            ],
            test_cases=[
                TestCase(
                    id=strawberry.ID(str(c.id)),
                    name=c.name,
                    hidden=c.hidden,
                    timeout_ms=c.timeout_ms,
                    input=c.input,
                    expected=c.expected,
                    stdin=c.stdin,
                    expected_stdout=c.expected_stdout,
                )
                for c in view.test_cases
            ],
            hidden_test_count=view.hidden_test_count,
            total_test_count=view.total_test_count,
            created_at=q.created_at,
            updated_at=q.revised_at,
        )


@strawberry.input
class StarterFileInput:
    path: str
    content: str


@strawberry.input
class QuestionLanguageInput:
    language: Language
    entrypoint: str
    solution_path: str
    starter_files: list[StarterFileInput] = strawberry.field(default_factory=list)


@strawberry.input
class TestCaseInput:
    name: str
    hidden: bool = False
    timeout_ms: int = 2000
    input: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="Function mode: a JSON list of positional arguments."
    )
    expected: JSON | None = strawberry.field(
        default=strawberry.UNSET, description="Function mode: the JSON value to return."
    )
    stdin: str | None = strawberry.field(default=None, description="Program mode: standard input.")
    expected_stdout: str | None = strawberry.field(
        default=None, description="Program mode: expected standard output."
    )


@strawberry.input(
    description="A question's whole content: createQuestion stores it, updateQuestion"
    " replaces the question's content with it (as a new revision)."
)
class CreateQuestionInput:
    title: str
    prompt: str
    languages: list[QuestionLanguageInput]
    test_cases: list[TestCaseInput]
    float_tolerance: float | None = strawberry.field(
        default=None, description="Absolute tolerance when comparing floats in results."
    )
    tags: list[str] = strawberry.field(
        default_factory=list,
        description="Lower-cased; letters, digits, spaces and + # . / _ - (at most 20).",
    )
    difficulty: Difficulty | None = None
    environment: SandboxConfigInput | None = strawberry.field(
        default=None,
        description="The sandbox's default configuration; kept by the revision. Refused"
        " (BAD_USER_INPUT) past the server's limits or with an image the backend cannot serve.",
    )
    starter_s3_prefix: str | None = strawberry.field(
        default=None,
        description="Starter files from S3 when the server has a bucket: a prefix relative"
        " to the account's area of it (S3_PREFIX/<account>/), copied into the first sandbox.",
    )

    def to_spec(self, limits: ConfigLimits) -> QuestionSpec:
        environment = None
        if self.environment is not None:
            environment = self.environment.checked("input.environment", limits)
        return QuestionSpec(
            environment=environment,
            title=self.title,
            prompt=self.prompt,
            float_tolerance=self.float_tolerance,
            tags=self.tags,
            difficulty=self.difficulty,
            starter_s3_prefix=self.starter_s3_prefix,
            languages=[
                LanguageSpec(
                    language=lang.language.value,
                    entrypoint=lang.entrypoint,
                    solution_path=lang.solution_path,
                    starter_files=[StarterFile(f.path, f.content) for f in lang.starter_files],
                )
                for lang in self.languages
            ],
            test_cases=[
                TestCaseSpec(
                    name=case.name,
                    hidden=case.hidden,
                    timeout_ms=case.timeout_ms,
                    input=None if case.input is strawberry.UNSET else case.input,
                    expected=None if case.expected is strawberry.UNSET else case.expected,
                    has_expected=case.expected is not strawberry.UNSET,
                    stdin=case.stdin,
                    expected_stdout=case.expected_stdout,
                )
                for case in self.test_cases
            ],
        )
