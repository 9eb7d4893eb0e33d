"""The ``usage`` query: an account's consumption for its staff (resolvers.usage)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import strawberry

from gql.context import Info, principal_of
from gql.types.report import report_config
from gql.types.usage import Usage
from resolvers.usage import account_usage


async def resolve_usage(
    info: Info, from_: Annotated[datetime, strawberry.argument(name="from")], to: datetime
) -> Usage:
    used = await account_usage(
        await principal_of(info),
        from_,
        to,
        pricing=report_config(info.context.settings).pricing,
    )
    return Usage.of(used)


@strawberry.type
class UsageQuery:
    # A field with its resolver, not a decorated method: with keyword arguments the
    # decorator is untyped for mypy (and this module is not in pyproject's exemptions).
    usage: Usage = strawberry.field(
        resolver=resolve_usage,
        description="The caller's account's usage in [from, to) (staff only; at most 366"
        " days): sessions, sandbox seconds, test runs, agent runs with tokens and cost.",
    )
