"""Typed event payloads (resolvers.event_kinds): every kind has a GraphQL type, stored JSON
keeps its shape, old rows stay readable, and candidates see what they saw before."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from gql.types.event import EVENT_TYPES, GenericSessionEvent, event_of
from gql.types.event_base import BUILDERS
from models.event import Event
from models.testrun import Verdict
from resolvers import event_kinds as ek
from resolvers.auth import Principal, PrincipalKind
from resolvers.events import EventRecord
from resolvers.visibility import visible
from tests.conftest import Account
from tests.support import Api

SID = uuid.uuid4()
NOW = datetime.now(UTC)


def required_args(cls: type[ek.Payload]) -> dict[str, Any]:
    """Values for a payload's required fields, by their annotation."""
    samples = {"str": "x", "int": 1, "bool": True, "SessionStatus": "ACTIVE"}
    out: dict[str, Any] = {}
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            out[f.name] = samples[str(f.type)]
    return out


def record(payload: ek.Payload, seq: int = 1) -> EventRecord:
    return EventRecord(SID, seq, payload.kind, NOW, payload, payload.to_json())


def principal(kind: PrincipalKind) -> Principal:
    return Principal(kind=kind, account_id=uuid.uuid4(), token_id=uuid.uuid4())


CANDIDATE = principal(PrincipalKind.CANDIDATE)
INTERVIEWER = principal(PrincipalKind.INTERVIEWER)


@pytest.mark.parametrize("kind", sorted(ek.KINDS))
def test_every_kind_has_a_graphql_type_and_round_trips(kind: str) -> None:
    cls = ek.KINDS[kind]
    assert cls in BUILDERS, f"{kind} has no GraphQL type: register one in gql/types"
    args = required_args(cls)
    if cls is ek.OutputTruncated:  # names its command or terminal
        args["command_id"] = "c"
    payload = cls(**args)
    assert ek.parse_stored(kind, payload.to_json()) == payload
    built = event_of(record(payload))
    assert type(built) in EVENT_TYPES
    assert not isinstance(built, GenericSessionEvent)
    assert built.type == kind


def test_truncated_output_names_its_command_or_terminal() -> None:
    by_command = event_of(record(ek.OutputTruncated(100, command_id="c")))
    by_terminal = event_of(record(ek.OutputTruncated(100, terminal_id="t")))
    assert type(by_command).__name__ == "CommandOutputTruncatedEvent"
    assert type(by_terminal).__name__ == "TerminalOutputTruncatedEvent"


def test_stored_json_keeps_its_shape() -> None:
    """camelCase keys as before payloads were typed (Claude kinds: the CLI's own names)."""
    exited = ek.CommandExited("c1", exit_code=3, timed_out=False, duration_ms=12)
    assert exited.to_json() == {
        "commandId": "c1",
        "exitCode": 3,
        "timedOut": False,
        "durationMs": 12,
    }
    result = ek.ClaudeResult("r1", "success", cost_usd=0.5, conversation_id="c")
    assert result.to_json() == {
        "runId": "r1",
        "subtype": "success",
        "is_error": False,
        "cost_usd": 0.5,
        "conversation_id": "c",
    }
    case = ek.TestRunCase("r1", 2, passed=False, hidden=True, verdict=Verdict.WRONG_ANSWER)
    assert case.to_json()["verdict"] == "WRONG_ANSWER"
    assert case.to_json()["public"] == {"runId": "r1", "index": 2, "passed": False}


def test_old_command_output_rows_read_as_command_output() -> None:
    """Before ``command.output`` existed, command output was ``terminal.output`` + commandId."""
    old = {"commandId": "c1", "stream": "stdout", "data": "hi\n"}
    rec = EventRecord.stored(SID, 5, "terminal.output", NOW, old)
    assert rec.type == "command.output"
    assert rec.payload == ek.CommandOutput("c1", "stdout", "hi\n")
    built = event_of(rec)
    assert type(built).__name__ == "CommandOutputEvent"
    assert built.type == "command.output"
    terminal = EventRecord.stored(SID, 6, "terminal.output", NOW, {"terminalId": "t", "data": "$"})
    assert terminal.payload == ek.TerminalOutput("t", "$")


def test_readers_tolerate_odd_rows() -> None:
    # Unknown keys ignored, missing optional ones None.
    rec = EventRecord.stored(SID, 1, "sandbox.started", NOW, {"sandboxId": "s", "new": 1})
    assert rec.payload == ek.SandboxStarted("s")
    # A row that does not fit its kind, and a kind this code does not know: generic events.
    for kind, data in (("testrun.case", {"index": "?"}), ("brand.new", {"a": 1})):
        rec = EventRecord.stored(SID, 2, kind, NOW, data)
        assert isinstance(rec.payload, ek.Unknown)
        built = event_of(rec)
        assert isinstance(built, GenericSessionEvent)
        assert built.payload == data
        assert built.type == kind


def test_candidates_see_what_they_saw_before() -> None:
    hidden = record(
        ek.TestRunCase("r", 1, passed=True, hidden=True, name="secret", error="input was 42")
    )
    shown = visible(CANDIDATE, hidden)
    assert shown is not None
    assert shown.payload == ek.TestRunCase("r", 1, passed=True, hidden=True)
    assert "secret" not in str(shown.data)
    assert "42" not in str(shown.data)
    assert visible(INTERVIEWER, hidden) is hidden
    note = record(ek.NoteAdded("hire", author="Ann"))
    assert visible(CANDIDATE, note) is None
    assert visible(INTERVIEWER, note) is note
    plain = record(ek.CommandOutput("c", "stdout", "x"))
    assert visible(CANDIDATE, plain) is plain  # the very record: renderings stay shared


def test_unparsable_rows_are_judged_as_before() -> None:
    """A stored row that does not fit its kind still hides what it marks hidden."""
    odd_case = {"hidden": True, "name": "secret", "public": {"runId": "r", "passed": True}}
    shown = visible(CANDIDATE, EventRecord.stored(SID, 1, "testrun.case", NOW, odd_case))
    assert shown is not None
    assert shown.payload.to_json() == {
        "hidden": True,
        "runId": "r",
        "passed": True,
    }
    odd_note = EventRecord.stored(SID, 2, "note.added", NOW, {"txt": "typo'd key"})
    assert visible(CANDIDATE, odd_note) is None


RECORDING = """query($s: ID!, $a: Int!) { recording(sessionId: $s, afterSeq: $a, first: 10) {
  events { seq type __typename ... on CommandOutputEvent { commandId stream data } } } }"""


async def test_old_command_output_rows_in_the_database_read_as_command_output(
    api: Api, account: Account
) -> None:
    """A row stored by the previous code, read through the API (SQLite and PostgreSQL)."""
    await Event.create(
        session_id=account["sessionId"],
        seq=20_000,
        type="terminal.output",
        at=datetime.now(UTC),
        payload={"commandId": "c-old", "stream": "stderr", "data": "boom\n"},
    )
    result = await api(
        RECORDING, {"s": account["sessionId"], "a": 19_999}, token=account["candidateToken"]
    )
    (event,) = result.ok()["recording"]["events"]
    assert event == {
        "seq": 20_000,
        "type": "command.output",
        "__typename": "CommandOutputEvent",
        "commandId": "c-old",
        "stream": "stderr",
        "data": "boom\n",
    }
