"""Every error a client sees carries ``extensions.code``; internals never leave the process.

``ApiSchema.process_errors`` runs on every error of every operation (HTTP and
WebSocket, before and during execution) before it is serialized, so it is the
one place where errors are classified:

- an ``ApiError`` from a resolver keeps its message and gets its code;
- an error graphql-core raised itself, or any error without a path (syntax,
  validation, variable coercion) is the client's input: ``BAD_USER_INPUT``;
- a database that cannot be reached (resolvers.database.is_unavailable): ``UNAVAILABLE``;
- anything else is a bug: logged with a reference id, answered ``INTERNAL``.
"""

from __future__ import annotations

import logging
import secrets

import strawberry
from graphql import GraphQLError
from strawberry.types import ExecutionContext

from resolvers.database import DatabaseUnavailable, is_unavailable
from resolvers.errors import ApiError

logger = logging.getLogger("interviewlm.errors")


def classify(error: GraphQLError) -> None:
    original = error.original_error
    while isinstance(original, GraphQLError) and original.original_error is not None:
        original = original.original_error
    extensions = dict(error.extensions or {})
    if extensions.get("code") == "INTERNAL":
        return  # already classified (Strawberry may report an error twice)
    if isinstance(original, ApiError):
        error.message = original.message
        extensions.update(original.extensions)
        extensions["code"] = original.code
    elif original is not None and is_unavailable(original):
        # The database is down or restarting: the client may retry, nothing is a bug.
        logger.warning("database unavailable at %s: %s", error.path, original)
        error.message = DatabaseUnavailable().message
        extensions = {"code": DatabaseUnavailable.code}
    elif original is None or isinstance(original, GraphQLError) or error.path is None:
        # No path: raised while parsing, validating or coercing variables (a
        # scalar's ValueError included), before any resolver ran.
        extensions.setdefault("code", "BAD_USER_INPUT")
    else:
        reference = secrets.token_hex(6)
        logger.error("internal error %s at %s", reference, error.path, exc_info=original)
        error.message = f"Internal server error (reference {reference})"
        extensions = {"code": "INTERNAL", "reference": reference}
    error.extensions = extensions


class ApiSchema(strawberry.Schema):
    def process_errors(
        self,
        errors: list[GraphQLError],
        execution_context: ExecutionContext | None = None,
    ) -> None:
        for error in errors:
            classify(error)
