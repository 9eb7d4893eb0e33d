"""``interviewlm seed-demo``: a fresh demo account with everything needed to try the API."""

from __future__ import annotations

import secrets
from datetime import timedelta
from typing import Any

from models.token import TokenScope
from resolvers.accounts import create_account, issue_token
from resolvers.auth import Principal, PrincipalKind
from resolvers.events import EventLog
from resolvers.question_specs import LanguageSpec, QuestionSpec, StarterFile, TestCaseSpec
from resolvers.questions import create_question
from resolvers.sessions import SessionSpec, create_session

PROMPT = """# Two Sum

Given a list of integers `nums` and an integer `target`, return the indices of
the two numbers that add up to `target`, smaller index first. Exactly one
answer exists.

```
two_sum([2, 7, 11, 15], 9) == [0, 1]
```
"""

STARTERS = (
    (
        "PYTHON",
        "two_sum",
        "solution.py",
        "def two_sum(nums: list[int], target: int) -> list[int]:\n"
        "    # your code here\n    return []\n",
    ),
    (
        "JAVASCRIPT",
        "twoSum",
        "solution.js",
        "function twoSum(nums, target) {\n  // your code here\n  return [];\n}\n",
    ),
    (
        "TYPESCRIPT",
        "twoSum",
        "solution.ts",
        "function twoSum(nums: number[], target: number): number[] {\n"
        "  // your code here\n  return [];\n}\n",
    ),
    (
        "GO",
        "TwoSum",
        "solution.go",
        "package main\n\nfunc TwoSum(nums []int, target int) []int {\n"
        "\t// your code here\n\treturn []int{}\n}\n",
    ),
)

CASES = (
    ("example", [[2, 7, 11, 15], 9], [0, 1], False),
    ("middle", [[3, 2, 4], 6], [1, 2], False),
    ("duplicates", [[3, 3], 6], [0, 1], False),
    ("negatives", [[-1, -2, -3, -4, -5], -8], [2, 4], True),
    ("large", [[*range(1000), 5000], 1997], [998, 999], True),
)


def demo_question() -> QuestionSpec:
    return QuestionSpec(
        title="Two Sum",
        prompt=PROMPT,
        languages=[
            LanguageSpec(lang, entry, path, [StarterFile(path, body)])
            for lang, entry, path, body in STARTERS
        ],
        test_cases=[
            TestCaseSpec(name=name, input=args, expected=want, has_expected=True, hidden=hidden)
            for name, args, want, hidden in CASES
        ],
    )


async def seed_demo(*, log: EventLog, public_url: str, max_file_bytes: int) -> dict[str, Any]:
    suffix = secrets.token_hex(3)
    account, admin = await create_account(
        f"Demo {suffix}",
        admin_email=f"admin+{suffix}@demo.interviewlm.dev",
        admin_name="Demo Admin",
    )
    interviewer = await issue_token(
        account.id, name="demo interviewer", scope=TokenScope.INTERVIEWER, user_id=admin.id
    )
    ats = await issue_token(account.id, name="demo ATS", scope=TokenScope.ATS)
    principal = Principal(
        kind=PrincipalKind.INTERVIEWER,
        account_id=account.id,
        token_id=interviewer.api_token.id,
        user_id=admin.id,
    )
    question = await create_question(principal, demo_question(), max_file_bytes=max_file_bytes)
    created = await create_session(
        principal,
        SessionSpec(
            question_id=str(question.question.lineage_id),
            candidate_name="Ada Candidate",
            candidate_email=f"ada+{suffix}@demo.interviewlm.dev",
            language="PYTHON",
        ),
        log=log,
        public_url=public_url,
        token_ttl=timedelta(days=7),
    )
    return {
        "accountId": str(account.id),
        "interviewerToken": interviewer.token,
        "atsToken": ats.token,
        "questionId": str(question.question.lineage_id),
        "sessionId": str(created.session.id),
        "candidateToken": created.candidate_token,
    }
