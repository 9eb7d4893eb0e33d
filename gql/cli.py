"""The ``interviewlm`` command: serve, migrate, account create, token create, seed-demo,
export-schema, makemigrations."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from gql.logs import configure_logging
from gql.settings import Settings, SettingsError


def _serve(settings: Settings, host: str, port: int) -> None:
    import gc

    import uvicorn

    from gql.app import create_app

    # A replica keeps many long-lived objects (tasks of sessions and watchers, pooled
    # connections) and allocates short-lived ones for every event: at CPython's default
    # young-generation threshold (700) the collector took a third of the append path's
    # time (bench/ingest.py: 10.7-16.1k -> 14.3-23.1k events/s). It still runs, less often.
    gc.set_threshold(10_000, 10, 10)
    uvicorn.run(
        create_app(settings),
        # The standard asyncio loop, not uvloop: uvloop's subprocess_exec
        # rejects user=/group=, which the local sandbox needs to drop root.
        loop="asyncio",
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        # Its loggers propagate to the root handler configure_logging set (gql.logs).
        log_config=None,
        # The sans-I/O implementation: uvicorn's legacy one compresses every
        # frame for every watcher with costly zlib defaults (bench/stream.py).
        ws="websockets-sansio",
        # No permessage-deflate: its zlib state is ~44 KB per connection (most of an idle
        # watcher's memory: bench/scale.py) and compressing small frames per watcher was
        # ~11 % of a delivery's CPU (bench/stream.py); events are small JSON batches.
        ws_per_message_deflate=False,
        # No WebSocket message beyond the body limit is buffered (uvicorn's default is
        # 16 MiB); gql.ws also caps it before decoding, at ANON_MAX_BODY_BYTES until
        # the connection's token is checked.
        ws_max_size=settings.max_body_bytes,
        lifespan="on",
        proxy_headers=True,
    )


async def _migrate(settings: Settings) -> None:
    from resolvers.database import migrate

    await migrate(settings.database_url)


async def _seed_demo(settings: Settings) -> dict[str, str]:
    from resolvers.bus import EventBus
    from resolvers.database import close_database, migrate, open_database
    from resolvers.events import EventLog
    from resolvers.seed import seed_demo

    await migrate(settings.database_url)
    bus = EventBus(settings.event_bus_url)
    await open_database(settings.database_url)
    await bus.connect()
    try:
        return await seed_demo(
            log=EventLog(bus),
            public_url=settings.public_url,
            max_file_bytes=settings.max_file_bytes,
        )
    finally:
        await bus.disconnect()
        await close_database()


async def _in_database(settings: Settings, work: Callable[[], Awaitable[Any]]) -> Any:
    """Migrate (a new deployment's first command needs no ``migrate`` before it), then
    run ``work`` with the database open."""
    from resolvers.database import close_database, migrate, open_database

    await migrate(settings.database_url)
    await open_database(settings.database_url)
    try:
        return await work()
    finally:
        await close_database()


async def _account_create(args: argparse.Namespace) -> dict[str, str]:
    from resolvers.accounts import DEFAULT_ADMIN_EMAIL, provision_account

    made = await provision_account(
        args.name, admin_email=args.admin_email or DEFAULT_ADMIN_EMAIL, admin_name=args.admin_name
    )
    return {
        "accountId": str(made.account.id),
        "interviewerToken": made.interviewer.token,
        "atsToken": made.ats.token,
    }


async def _token_create(args: argparse.Namespace) -> dict[str, str]:
    from resolvers.accounts import issue_account_token

    created = await issue_account_token(
        args.account,
        kind=args.kind,
        name=args.name,
        user_email=args.user,
        user_name=args.user_name,
    )
    return {
        "tokenId": str(created.api_token.id),
        "accountId": str(created.api_token.account_id),
        "kind": args.kind,
        "token": created.token,
    }


def _print_created(created: dict[str, str], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(created))
        return
    for key, value in created.items():
        print(f"{key}: {value}")
    print("Tokens are shown this once (only their hashes are stored): keep them now.")


def _export_schema() -> str:
    from gql.schema import build_schema

    return build_schema().as_str() + "\n"


def _makemigrations() -> None:
    from tortoise.cli.cli import main as tortoise_main

    sys.argv = ["tortoise", "-c", "resolvers.database.MAKEMIGRATIONS_CONFIG", "makemigrations"]
    tortoise_main()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="interviewlm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="run the API server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    commands.add_parser("migrate", help="apply database migrations")
    seed = commands.add_parser(
        "seed-demo", help="create a demo account, tokens, question, session; print them as JSON"
    )
    # Nothing reads it: the output is always one JSON object. Accepted because the
    # documented command line is ``seed-demo --json`` (DESIGN.md's public contract).
    seed.add_argument("--json", action="store_true", help="the output is always JSON")
    account = commands.add_parser("account", help="manage accounts").add_subparsers(
        dest="action", required=True
    )
    account_create = account.add_parser(
        "create", help="create an account, its admin user, an interviewer and an ATS token"
    )
    account_create.add_argument("--name", required=True, help="the account's name")
    account_create.add_argument(
        "--admin-email",
        help="the first user's email (an admin; the interviewer token acts as them);"
        " default: admin@interviewlm.invalid",
    )
    account_create.add_argument("--admin-name", default="Admin", help="the first user's name")
    account_create.add_argument("--json", action="store_true", help="print one JSON object")
    token = commands.add_parser("token", help="manage API tokens").add_subparsers(
        dest="action", required=True
    )
    token_create = token.add_parser("create", help="issue an API token (printed once)")
    token_create.add_argument("--account", required=True, help="the account's id")
    token_create.add_argument("--kind", required=True, choices=["interviewer", "ats"])
    token_create.add_argument("--name", help="a label for the token")
    token_create.add_argument(
        "--user",
        metavar="EMAIL",
        help="interviewer tokens: the user it acts as (created as an interviewer if new);"
        " default: the account's first admin",
    )
    token_create.add_argument("--user-name", help="the name of a user --user creates")
    token_create.add_argument("--json", action="store_true", help="print one JSON object")
    commands.add_parser("export-schema", help="print the GraphQL schema (SDL)")
    commands.add_parser("makemigrations", help="write a migration for model changes")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        parser.exit(2, f"interviewlm: {exc}\n")
    configure_logging(settings.log_level, settings.log_format)

    if args.command == "serve":
        _serve(settings, args.host, args.port)
    elif args.command == "migrate":
        asyncio.run(_migrate(settings))
    elif args.command == "seed-demo":
        print(json.dumps(asyncio.run(_seed_demo(settings))))
    elif args.command in {"account", "token"}:
        from resolvers.errors import ApiError

        create = _account_create if args.command == "account" else _token_create
        try:
            created = asyncio.run(_in_database(settings, lambda: create(args)))
        except ApiError as exc:
            parser.exit(1, f"interviewlm {args.command} {args.action}: {exc.message}\n")
        _print_created(created, as_json=args.json)
    elif args.command == "export-schema":
        sys.stdout.write(_export_schema())
    elif args.command == "makemigrations":
        _makemigrations()
