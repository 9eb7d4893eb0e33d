"""Questions edited and archived (issue 11).

An update is a new revision under the same id: a session created before it keeps
its revision (its test run judges the old cases, its sandbox gets the old README),
a session created after gets the new one. Archived questions leave the list and
take no new sessions. Candidates reach only their own session's revision; other
accounts reach nothing.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

from tests.conftest import Account, random_email
from tests.question_support import (
    ADD,
    ARCHIVE,
    CREATE,
    CREATE_SESSION,
    LIST,
    QUESTION,
    SESSION_QUESTION,
    UNARCHIVE,
    UPDATE,
    create,
    new_session,
    question_input,
    staff,
    titles,
    update,
)
from tests.support import Api
from tests.test_testruns import SOLUTIONS, run_tests, write
from tests.workspace_support import FILE, start

# -- revisions ---------------------------------------------------------------------


async def test_a_session_keeps_the_revision_it_started_with(api: Api, account: Account) -> None:
    qid = account["questionId"]
    before = (await api(QUESTION, {"id": qid}, token=staff(account))).ok()["question"]
    assert (before["revision"], before["title"], before["totalTestCount"]) == (1, "Two Sum", 5)

    updated = await update(api, account, qid, "Add two numbers", tags=["math"])
    assert (updated["id"], updated["revision"], updated["title"]) == (qid, 2, "Add two numbers")
    assert updated["totalTestCount"] == 2
    assert updated["createdAt"] == before["createdAt"]
    assert updated["updatedAt"] > before["updatedAt"]
    latest = (await api(QUESTION, {"id": qid}, token=staff(account))).ok()["question"]
    assert latest == updated

    # The session created before the update still shows, and is judged on, revision 1.
    old = (await api(SESSION_QUESTION, {"id": account["sessionId"]}, token=staff(account))).ok()
    assert old["session"]["question"] == before
    seen = await api(QUESTION, {"id": qid}, token=account["candidateToken"])
    as_candidate = seen.ok()["question"]
    assert (as_candidate["id"], as_candidate["revision"]) == (qid, 1)
    assert as_candidate["hiddenTestCount"] == 2
    assert [c["hidden"] for c in as_candidate["testCases"]] == [False, False, False]
    await start(api, account)
    await write(api, account, "solution.py", SOLUTIONS["PYTHON"][1])
    old_run = await run_tests(api, account)
    assert (old_run["status"], old_run["total"], old_run["passed"]) == ("FINISHED", 5, 5)

    # A session created after it gets revision 2: its README, its cases.
    fresh = await new_session(api, account, qid)
    assert fresh["question"] == {"id": qid, "revision": 2, "title": "Add two numbers"}
    await start(api, fresh)
    readme = await api(
        FILE, {"s": fresh["sessionId"], "p": "README.md"}, token=fresh["candidateToken"]
    )
    assert readme.ok()["file"]["content"].startswith("# Add two numbers")
    await write(api, fresh, "solution.py", ADD)
    new_run = await run_tests(api, fresh)
    assert (new_run["status"], new_run["total"], new_run["passed"]) == ("FINISHED", 2, 2)
    assert [r["name"] for r in new_run["results"]] == ["one plus two", None]


async def test_a_refused_update_adds_no_revision(api: Api, account: Account) -> None:
    qid = account["questionId"]
    broken = question_input("No cases")
    broken["testCases"] = []
    refused = await api(UPDATE, {"id": qid, "in": broken}, token=staff(account))
    assert refused.codes == ["BAD_USER_INPUT"]
    assert refused.errors[0]["extensions"]["field"] == "input.testCases"
    bad_tag = await api(
        UPDATE, {"id": qid, "in": question_input("T", tags=["ok", 'a"b'])}, token=staff(account)
    )
    assert bad_tag.codes == ["BAD_USER_INPUT"]
    assert bad_tag.errors[0]["extensions"]["field"] == "input.tags[1]"
    too_many = await api(
        UPDATE,
        {"id": qid, "in": question_input("T", tags=[f"t{i}" for i in range(21)])},
        token=staff(account),
    )
    assert too_many.codes == ["BAD_USER_INPUT"]
    latest = (await api(QUESTION, {"id": qid}, token=staff(account))).ok()["question"]
    assert (latest["revision"], latest["title"]) == (1, "Two Sum")
    for bad_id, code in (("not-an-id", "BAD_USER_INPUT"), (account["sessionId"], "NOT_FOUND")):
        missing = await api(UPDATE, {"id": bad_id, "in": question_input("T")}, token=staff(account))
        assert missing.codes == [code]


async def test_concurrent_updates_never_share_a_revision(api: Api, account: Account) -> None:
    qid = account["questionId"]
    results = await asyncio.gather(
        *(
            api(UPDATE, {"id": qid, "in": question_input(f"Edit {i}")}, token=staff(account))
            for i in range(4)
        )
    )
    done = [r.data["updateQuestion"] for r in results if not r.errors]
    assert all(r.codes == ["CONFLICT"] for r in results if r.errors)
    assert done
    revisions = sorted(edit["revision"] for edit in done)
    assert revisions == list(range(2, 2 + len(done)))
    latest = (await api(QUESTION, {"id": qid}, token=staff(account))).ok()["question"]
    assert latest["revision"] == revisions[-1]
    assert await titles(api, account) == [latest["title"]]


# -- archiving ---------------------------------------------------------------------


async def test_archive_hides_and_blocks_new_sessions_not_old_ones(
    api: Api, account: Account
) -> None:
    qid = account["questionId"]
    archived = (await api(ARCHIVE, {"id": qid}, token=staff(account))).ok()["archiveQuestion"]
    assert archived["archivedAt"]
    again = (await api(ARCHIVE, {"id": qid}, token=staff(account))).ok()["archiveQuestion"]
    assert again == archived  # idempotent: the first archiving time stays
    assert await titles(api, account) == []
    assert await titles(api, account, all=True) == ["Two Sum"]
    read = (await api(QUESTION, {"id": qid}, token=staff(account))).ok()["question"]
    assert read["archivedAt"] == archived["archivedAt"]

    blocked = await api(CREATE_SESSION % random_email(), {"q": qid}, token=staff(account))
    assert blocked.codes == ["CONFLICT"]
    edit = await api(UPDATE, {"id": qid, "in": question_input("T")}, token=staff(account))
    assert edit.codes == ["CONFLICT"]

    # The session that uses it carries on: its candidate reads it and starts a sandbox.
    mine = await api(QUESTION, {"id": qid}, token=account["candidateToken"])
    assert mine.ok()["question"]["title"] == "Two Sum"
    assert (await start(api, account))["state"] == "RUNNING"

    restored = (await api(UNARCHIVE, {"id": qid}, token=staff(account))).ok()
    assert restored["unarchiveQuestion"]["archivedAt"] is None
    assert await titles(api, account) == ["Two Sum"]
    assert (await new_session(api, account, qid))["question"]["revision"] == 1


# -- who reaches what ----------------------------------------------------------------


async def test_candidates_and_other_accounts_reach_nothing_else(
    api: Api, account: Account, account_factory: Callable[[], Awaitable[Account]]
) -> None:
    qid = account["questionId"]
    candidate = account["candidateToken"]
    other_question = await create(api, account, "Not in your session")
    for operation, variables in (
        (LIST, {"first": 5}),
        (UPDATE, {"id": qid, "in": question_input("T")}),
        (ARCHIVE, {"id": qid}),
        (UNARCHIVE, {"id": qid}),
        (CREATE, {"in": question_input("T")}),
    ):
        assert (await api(operation, variables, token=candidate)).codes == ["FORBIDDEN"]
    unseen = await api(QUESTION, {"id": other_question["id"]}, token=candidate)
    assert unseen.codes == ["NOT_FOUND"]

    intruder = await account_factory()
    for token in (intruder["interviewerToken"], intruder["atsToken"]):
        for operation, variables in (
            (QUESTION, {"id": qid}),
            (UPDATE, {"id": qid, "in": question_input("Mine now")}),
            (ARCHIVE, {"id": qid}),
            (UNARCHIVE, {"id": qid}),
        ):
            result = await api(operation, variables, token=token)
            assert result.codes == ["NOT_FOUND"], (operation, result.body)
        listed = await api(LIST, {"first": 100, "all": True}, token=token)
        assert qid not in str(listed.body)
        taken = await api(CREATE_SESSION % random_email(), {"q": qid}, token=token)
        assert taken.codes == ["NOT_FOUND"]
    intruder_candidate = await api(QUESTION, {"id": qid}, token=intruder["candidateToken"])
    assert intruder_candidate.codes == ["NOT_FOUND"]
    untouched = (await api(QUESTION, {"id": qid}, token=staff(account))).ok()["question"]
    assert (untouched["revision"], untouched["archivedAt"]) == (1, None)
