"""Parsing and validation with a bounded cost, off the event loop for larger documents.

graphql-core parses and validates synchronously, and validation is quadratic in
fields repeated within a selection (OverlappingFieldsCanBeMerged): a 352 KB
document of repeated fields held the event loop for 3.5 s, and every other
request (``/healthz`` included) waited with it. So:

- every document is parsed with graphql-core's ``max_tokens``: the limit of the
  caller (``DocumentLimits``: one for authenticated callers, a smaller one for
  callers without a token) -- the parser stops at the first token past it;
- documents longer than ``OFFLOAD_CHARS`` are parsed and validated in a worker
  thread, at most ``slots`` at a time per kind of caller (so anonymous callers
  cannot take the threads authenticated ones need). The loop keeps serving
  while a thread works (graphql-core releases the GIL every switch interval);
- validation is quadratic in the fields that share a response name within one
  selection set (inline fragments and fragment spreads merged in: 1,200
  repeated ``viewer { kind }`` took 4 s). A linear pass refuses a document in
  which one selection set selects the same response name more than
  ``MAX_SAME_FIELD`` times, before validating it;
- a document with several operations and no ``operationName`` is refused here,
  on the parsed document (it used to be parsed a second time for that check);
- the documents clients send again and again (every watcher subscribes with the same
  query; SPAs repeat theirs) are parsed and validated once: a small LRU keyed by the
  query text and the token limit it was parsed under keeps the document, and whether
  it validated. Without it each subscription kept its own parse (about 20 KB, most of
  a subscription's memory: bench/scale.py). Validation depends only on the document,
  the schema and the rules, which are fixed per process; executing never changes a
  document, so one serves every request that sends the same text.

A parse error found in a thread is reproduced by Strawberry's own parser on the
loop, under the same ``max_tokens``: at most that many tokens, so bounded.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
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
    parse,
)
from graphql.validation import ASTValidationRule
from strawberry.extensions import SchemaExtension
from strawberry.schema.exceptions import CannotGetOperationTypeError
from strawberry.schema.schema import validate_document

# About 25 ms of validation for the worst documents of this size (measured:
# 128 repeated `viewer { kind }` selections, 2 KiB, validate in ~100 ms).
OFFLOAD_CHARS = 1024
MULTIPLE_OPERATIONS = "Must provide operation name if query contains multiple operations."
MAX_SAME_FIELD = 10
CACHED_DOCUMENTS = 256
CACHED_QUERY_CHARS = 8192
"""Longer documents are parsed afresh each time (the cache's memory stays bounded)."""


class MissingOperationName(CannotGetOperationTypeError):
    """Raised from the parse hook: Strawberry answers it as a request error over HTTP
    and WebSocket alike (it would otherwise run the first operation)."""

    def __init__(self) -> None:
        super().__init__(None)

    def as_http_error_reason(self) -> str:
        return MULTIPLE_OPERATIONS


@dataclass(slots=True)
class _Parsed:
    document: DocumentNode
    valid: bool = False
    """Validated without errors once: not validated again."""


@dataclass(slots=True)
class DocumentLimits:
    """Token limits and worker-thread slots, shared by all requests of a process."""

    max_tokens: int = 5_000
    anon_max_tokens: int = 1_000
    slots: int = 2
    anon_slots: int = 1
    _semaphores: dict[bool, asyncio.Semaphore] = field(default_factory=dict, repr=False)
    _documents: OrderedDict[tuple[str, int], _Parsed] = field(
        default_factory=OrderedDict, repr=False
    )

    def cached(self, query: str, max_tokens: int) -> _Parsed | None:
        parsed = self._documents.get((query, max_tokens))
        if parsed is not None:
            self._documents.move_to_end((query, max_tokens))
        return parsed

    def remember(self, query: str, max_tokens: int, document: DocumentNode) -> None:
        if len(query) > CACHED_QUERY_CHARS:
            return
        self._documents[(query, max_tokens)] = _Parsed(document)
        while len(self._documents) > CACHED_DOCUMENTS:
            self._documents.popitem(last=False)

    def tokens_for(self, authenticated: bool) -> int:
        return self.max_tokens if authenticated else self.anon_max_tokens

    def semaphore(self, authenticated: bool) -> asyncio.Semaphore:
        # Created lazily: inside the running loop that will use it.
        if authenticated not in self._semaphores:
            slots = self.slots if authenticated else self.anon_slots
            self._semaphores[authenticated] = asyncio.Semaphore(max(1, slots))
        return self._semaphores[authenticated]


def _authenticated(context: Any) -> bool:
    """The context says whether the caller presented a valid token (see gql.context)."""
    return bool(getattr(context, "authenticated", False))


class BoundedDocuments(SchemaExtension):
    """Strawberry extension: bounded parse, then validation, in a thread when large."""

    def __init__(self, limits: DocumentLimits) -> None:
        super().__init__()
        self.limits = limits

    async def on_parse(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        query = ctx.query
        authenticated = _authenticated(ctx.context)
        max_tokens = self.limits.tokens_for(authenticated)
        ctx.parse_options["max_tokens"] = max_tokens
        if ctx.graphql_document is None and query:
            cached = self.limits.cached(query, max_tokens)
            try:
                if cached is not None:
                    document = cached.document
                elif len(query) > OFFLOAD_CHARS:
                    async with self.limits.semaphore(authenticated):
                        document = await asyncio.to_thread(parse, query, max_tokens=max_tokens)
                else:
                    document = parse(query, max_tokens=max_tokens)
            except GraphQLError:
                pass  # Strawberry parses again (bounded by max_tokens) and reports it
            else:
                if cached is None:
                    self.limits.remember(query, max_tokens, document)
                operations = [
                    d for d in document.definitions if isinstance(d, OperationDefinitionNode)
                ]
                if ctx.operation_name is None and len(operations) > 1:
                    raise MissingOperationName
                ctx.graphql_document = document
        yield

    async def on_validate(self) -> AsyncIterator[None]:
        ctx = self.execution_context
        document = ctx.graphql_document
        if document is not None and ctx.validation_rules and ctx.pre_execution_errors is None:
            query = ctx.query or ""
            cached = self.limits.cached(query, ctx.parse_options.get("max_tokens", 0))
            if cached is not None and cached.valid and cached.document is document:
                ctx.pre_execution_errors = []
                yield
                return
            args = (ctx.schema._schema, document, tuple(ctx.validation_rules))
            if len(query) > OFFLOAD_CHARS:
                async with self.limits.semaphore(_authenticated(ctx.context)):
                    ctx.pre_execution_errors = await asyncio.to_thread(_validate, *args)
            else:
                ctx.pre_execution_errors = _validate(*args)
            if cached is not None and cached.document is document:
                cached.valid = not ctx.pre_execution_errors
        yield


def _validate(
    schema: GraphQLSchema, document: DocumentNode, rules: tuple[type[ASTValidationRule], ...]
) -> list[GraphQLError]:
    repeated = _repeated_field(document)
    if repeated is not None:
        message = (
            f"`{repeated}` is selected more than {MAX_SAME_FIELD} times in one selection"
            " set (fragments included); select it once."
        )
        return [GraphQLError(message)]
    return validate_document(schema, document, rules)


def _repeated_field(document: DocumentNode) -> str | None:
    """A response name selected more than MAX_SAME_FIELD times in one selection set,
    inline fragments and fragment spreads merged in (each fragment once). Linear in
    the document for each selection set's own reach; no validation needed first."""
    fragments = {
        d.name.value: d.selection_set
        for d in document.definitions
        if isinstance(d, FragmentDefinitionNode)
    }
    pending: list[SelectionSetNode] = [
        d.selection_set
        for d in document.definitions
        if isinstance(d, OperationDefinitionNode | FragmentDefinitionNode)
    ]
    seen_sets: set[int] = set()
    while pending:
        selection_set = pending.pop()
        if id(selection_set) in seen_sets:
            continue
        seen_sets.add(id(selection_set))
        counts: dict[str, int] = {}
        spread: set[str] = set()
        stack = [selection_set]
        while stack:
            for selection in stack.pop().selections:
                if isinstance(selection, FieldNode):
                    key = (selection.alias or selection.name).value
                    counts[key] = counts.get(key, 0) + 1
                    if counts[key] > MAX_SAME_FIELD:
                        return key
                    if selection.selection_set is not None:
                        pending.append(selection.selection_set)
                elif isinstance(selection, InlineFragmentNode):
                    stack.append(selection.selection_set)
                elif isinstance(selection, FragmentSpreadNode):
                    name = selection.name.value
                    if name not in spread and name in fragments:
                        spread.add(name)
                        stack.append(fragments[name])
    return None
