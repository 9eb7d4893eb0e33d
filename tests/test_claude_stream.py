"""The stream-json parser: every documented line type, unknown types, split lines, garbage."""

from __future__ import annotations

import json

from resolvers import claude_stream as cs


def parse(obj: object) -> list[cs.Item]:
    return cs.parse_line(json.dumps(obj))


def test_init() -> None:
    (item,) = parse(
        {
            "type": "system",
            "subtype": "init",
            "session_id": "s1",
            "model": "claude-x",
            "tools": ["Bash", "Edit"],
        }
    )
    assert item == cs.Init("s1", "claude-x", ["Bash", "Edit"])


def test_assistant_text_and_tool_use_in_one_message() -> None:
    items = parse(
        {
            "type": "assistant",
            "message": {
                "content": [
                    {"type": "text", "text": "Let me look."},
                    {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": "ls"}},
                ]
            },
        }
    )
    assert items == [cs.Text("Let me look."), cs.ToolUse("t1", "Bash", {"command": "ls"})]


def test_tool_results_as_text_or_blocks() -> None:
    items = parse(
        {
            "type": "user",
            "message": {
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": "t1",
                        "content": "a.py\n",
                        "is_error": False,
                    },
                    {
                        "type": "tool_result",
                        "tool_use_id": "t2",
                        "is_error": True,
                        "content": [{"type": "text", "text": "boom"}],
                    },
                ]
            },
        }
    )
    assert items == [cs.ToolResult("t1", "a.py\n", False), cs.ToolResult("t2", "boom", True)]


def test_result_with_cost_and_turns() -> None:
    (item,) = parse(
        {
            "type": "result",
            "subtype": "success",
            "is_error": False,
            "result": "Done",
            "total_cost_usd": 0.05,
            "duration_ms": 900,
            "duration_api_ms": 700,
            "num_turns": 3,
            "session_id": "s1",
        }
    )
    assert item == cs.Result("success", False, "Done", 0.05, 900, 700, 3, "s1")


def test_other_system_lines_unknown_types_and_garbage() -> None:
    (retry,) = parse({"type": "system", "subtype": "api_retry", "attempt": 2})
    assert isinstance(retry, cs.System)
    assert retry.subtype == "api_retry"
    assert retry.data["attempt"] == 2
    assert parse({"type": "brand_new", "x": 1}) == [cs.Raw({"type": "brand_new", "x": 1})]
    (bad,) = cs.parse_line("{not json")
    assert isinstance(bad, cs.ParseError)
    assert bad.line == "{not json"
    (array,) = cs.parse_line("[1, 2]")
    assert isinstance(array, cs.ParseError)


def test_line_buffer_reassembles_split_lines() -> None:
    buffer = cs.LineBuffer()
    assert buffer.feed(b'{"type": "assistant", "mess') == []
    assert buffer.feed(b'age": {"content": "hi"}}\n{"type"') == [
        '{"type": "assistant", "message": {"content": "hi"}}'
    ]
    assert buffer.feed(b': "x"}') == []
    assert buffer.flush() == ['{"type": "x"}']
    assert buffer.flush() == []
    multibyte = "é".encode()
    assert buffer.feed(b'"' + multibyte[:1]) == []
    assert buffer.feed(multibyte[1:] + b'"\n') == ['"é"']


def test_error_results_become_plain_sentences() -> None:
    assert cs.result_error("error_max_turns") == "the agent reached its turn limit"
    assert cs.result_error("whatever_the_cli_invents") == "the agent reported an error"
    assert set(cs.KINDS) == {
        cs.Init,
        cs.Text,
        cs.ToolUse,
        cs.ToolResult,
        cs.Result,
        cs.System,
        cs.Raw,
        cs.ParseError,
    }
