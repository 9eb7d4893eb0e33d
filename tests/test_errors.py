"""Error classification: codes for expected errors, nothing internal for bugs."""

from __future__ import annotations

import logging

import pytest
from graphql import GraphQLError

from gql.errors import classify
from resolvers.errors import BadUserInput, NotFound


def test_api_errors_keep_message_and_get_their_code() -> None:
    error = GraphQLError("x", original_error=BadUserInput("input.title", "must not be empty"))
    classify(error)
    assert error.formatted["message"] == "input.title: must not be empty"
    assert error.formatted["extensions"] == {"code": "BAD_USER_INPUT", "field": "input.title"}
    error = GraphQLError("x", original_error=NotFound("session"))
    classify(error)
    assert error.formatted["extensions"] == {"code": "NOT_FOUND"}


def test_graphql_errors_are_bad_user_input() -> None:
    error = GraphQLError("Cannot query field 'nope' on type 'Query'.")
    classify(error)
    assert error.formatted["extensions"] == {"code": "BAD_USER_INPUT"}


def test_unexpected_errors_are_masked_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    secret = "password=hunter2 at /srv/app/db.py line 12"
    error = GraphQLError(secret, path=["viewer"], original_error=RuntimeError(secret))
    with caplog.at_level(logging.ERROR, logger="interviewlm.errors"):
        classify(error)
        classify(error)  # Strawberry may report an error twice: classified once
    formatted = error.formatted
    assert secret not in str(formatted)
    assert formatted["extensions"]["code"] == "INTERNAL"
    reference = formatted["extensions"]["reference"]
    assert reference in formatted["message"]
    assert len(caplog.records) == 1
    assert reference in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is not None


def test_coercion_errors_without_a_path_are_bad_user_input() -> None:
    error = GraphQLError("Variable '$at' got invalid value", original_error=ValueError("bad date"))
    classify(error)
    assert error.formatted["extensions"] == {"code": "BAD_USER_INPUT"}
