"""Every GraphQL operation, over HTTP and WebSocket, counted, timed and logged once.

``Observe`` is a Strawberry schema extension (the outermost one, gql.schema), so it
sees each operation from before parsing to after its errors are classified
(gql.errors): ``interviewlm_graphql_requests_total{operation,kind}``,
``interviewlm_graphql_errors_total{operation,code}`` and, for queries and
mutations, ``interviewlm_graphql_request_duration_seconds{kind}``; then one access
line on the ``interviewlm.access`` logger (operation, kind, outcome code, duration,
account, session: a ``sessionId`` variable or root argument, else a candidate's own).

Labels stay bounded whatever the caller sends: the operation label is a root field
of the schema -- the operation's one root field; with several, ``operationName`` when
it is one of them, else ``multiple``; ``introspection`` for ``__schema``/``__type``
alone; ``anonymous`` when none can be told (unparsable, unknown operation). A code
label is an ``extensions.code`` of the API's shape (``INTERNAL`` otherwise).

A subscription is counted when it starts executing and logged when it ends (its
"duration" is how long it was watched); its per-event delivery is measured by the
stream's own series.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import Iterator
from functools import lru_cache
from typing import Any

from graphql import (
    DocumentNode,
    FieldNode,
    FragmentDefinitionNode,
    FragmentSpreadNode,
    GraphQLError,
    GraphQLSchema,
    InlineFragmentNode,
    OperationDefinitionNode,
    SelectionSetNode,
    StringValueNode,
    VariableNode,
)
from strawberry.exceptions import MissingQueryError
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError

from gql import logs
from gql.context import Context
from resolvers import metrics

access = logging.getLogger("interviewlm.access")
_CODE = re.compile(r"[A-Z][A-Z_]{0,39}")
_MAX_FRAGMENT_DEPTH = 5
# What Strawberry raises (rather than answers) for a request it cannot run.
_REFUSED = (MissingQueryError, CannotGetOperationTypeError, InvalidOperationTypeError)


@lru_cache(maxsize=4)
def _root_fields(schema: GraphQLSchema) -> dict[str, frozenset[str]]:
    roots = {
        "query": schema.query_type,
        "mutation": schema.mutation_type,
        "subscription": schema.subscription_type,
    }
    return {kind: frozenset(t.fields) if t else frozenset() for kind, t in roots.items()}


def _operation(document: DocumentNode | None, name: str | None) -> OperationDefinitionNode | None:
    if document is None:
        return None
    ops = [d for d in document.definitions if isinstance(d, OperationDefinitionNode)]
    if name:
        return next((op for op in ops if op.name and op.name.value == name), None)
    return ops[0] if len(ops) == 1 else None


def _selected(
    selections: SelectionSetNode, fragments: dict[str, FragmentDefinitionNode], depth: int = 0
) -> list[str]:
    """Root field names, through fragments (bounded: the document is the caller's)."""
    names: list[str] = []
    for node in selections.selections:
        if isinstance(node, FieldNode):
            names.append(node.name.value)
        elif depth < _MAX_FRAGMENT_DEPTH:
            inner: SelectionSetNode | None = None
            if isinstance(node, InlineFragmentNode):
                inner = node.selection_set
            elif isinstance(node, FragmentSpreadNode) and node.name.value in fragments:
                inner = fragments[node.name.value].selection_set
            if inner is not None:
                names.extend(_selected(inner, fragments, depth + 1))
    return names


def operation_label(
    schema: GraphQLSchema, document: DocumentNode | None, operation_name: str | None
) -> tuple[str, str]:
    """``(operation, kind)``, both from bounded sets (see the module's docstring)."""
    op = _operation(document, operation_name)
    if op is None or document is None:
        return "anonymous", "unknown"
    kind = op.operation.value
    known = _root_fields(schema).get(kind, frozenset())
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    fields = set(_selected(op.selection_set, fragments))
    real = fields & known
    if len(real) == 1:
        return real.pop(), kind
    if len(real) > 1:
        # The client's name for it when that is one of its fields, else a fixed label.
        return (operation_name if operation_name in real else "multiple"), kind
    if fields & {"__schema", "__type"}:
        return "introspection", kind
    return "anonymous", kind


def error_code(error: GraphQLError) -> str:
    code = (error.extensions or {}).get("code")
    return code if isinstance(code, str) and _CODE.fullmatch(code) else "INTERNAL"


def _uuid(value: object) -> str | None:
    """The session id as a canonical UUID, or nothing: never the caller's text as sent."""
    if isinstance(value, str):
        try:
            return str(uuid.UUID(value))
        except ValueError:
            return None
    return None


def session_of(
    document: DocumentNode | None, operation_name: str | None, variables: dict[str, Any] | None
) -> str | None:
    """The session an operation is about: a ``sessionId`` variable, else the
    ``sessionId`` argument of its first root field that has one (a variable or a literal)."""
    variables = variables or {}
    if "sessionId" in variables:
        return _uuid(variables["sessionId"])
    op = _operation(document, operation_name)
    for node in op.selection_set.selections if op else ():
        for arg in (node.arguments or ()) if isinstance(node, FieldNode) else ():
            if arg.name.value != "sessionId":
                continue
            if isinstance(arg.value, VariableNode):
                return _uuid(variables.get(arg.value.name.value))
            if isinstance(arg.value, StringValueNode):
                return _uuid(arg.value.value)
    return None


class Observe(SchemaExtension):
    def on_operation(self) -> Iterator[None]:
        started = time.perf_counter()
        self._counted: tuple[str, str] | None = None
        outcome = "INTERNAL"
        try:
            yield
            outcome = self._finish()
        except _REFUSED:
            outcome = "BAD_USER_INPUT"  # answered as a request error (gql.http)
            raise
        except (GeneratorExit, asyncio.CancelledError):
            outcome = self._finish()  # a subscription the client (or shutdown) ended
            raise
        finally:
            self._log(outcome, time.perf_counter() - started)

    def on_execute(self) -> Iterator[None]:
        # Counted as it starts: a subscription may then run for hours.
        self._count()
        token = logs.OPERATION.set(self._label()[0])
        try:
            yield
        finally:
            # A subscription's stream may be closed from another context than it began in.
            with contextlib.suppress(ValueError):
                logs.OPERATION.reset(token)

    def _label(self) -> tuple[str, str]:
        ctx = self.execution_context
        return operation_label(ctx.schema._schema, ctx.graphql_document, ctx.operation_name)

    def _count(self) -> tuple[str, str]:
        if self._counted is None:
            self._counted = self._label()
            metrics.REQUESTS.labels(*self._counted).inc()
        return self._counted

    def _finish(self) -> str:
        ctx = self.execution_context
        operation = self._count()[0]
        errors = list(ctx.pre_execution_errors or ())
        result_errors = getattr(ctx.result, "errors", None)
        if not errors and result_errors:
            errors = list(result_errors)
        codes = [error_code(e) for e in errors]
        for code in codes:
            metrics.ERRORS.labels(operation, code).inc()
        return codes[0] if codes else "OK"

    def _log(self, outcome: str, seconds: float) -> None:
        ctx = self.execution_context
        if self._counted is None:
            # Refused before it executed by an exception, not with a result.
            operation, kind = self._count()
            metrics.ERRORS.labels(operation, outcome).inc()
        operation, kind = self._count()
        if kind in {"query", "mutation"}:
            metrics.REQUEST_DURATION.labels(kind).observe(seconds)
        context = ctx.context
        principal = context.connection_principal if isinstance(context, Context) else None
        account = str(principal.account_id) if principal else None
        session = session_of(ctx.graphql_document, ctx.operation_name, ctx.variables) or (
            str(principal.session_id) if principal and principal.session_id else None
        )
        access.info(
            "graphql %s %s %s %.1f ms",
            kind,
            operation,
            outcome,
            seconds * 1000,
            extra={
                "operation": operation,
                "kind": kind,
                "code": outcome,
                "duration_ms": round(seconds * 1000, 1),
                "account_id": account,
                "session_id": session,
            },
        )
