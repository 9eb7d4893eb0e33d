"""The ``interviewlm`` command: serve, migrate, seed-demo, export-schema, makemigrations."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys

from gql.settings import Settings, SettingsError


def _serve(settings: Settings, host: str, port: int) -> None:
    import uvicorn

    from gql.app import create_app

    uvicorn.run(
        create_app(settings),
        # The standard asyncio loop, not uvloop: uvloop's subprocess_exec
        # rejects user=/group=, which the local sandbox needs to drop root.
        loop="asyncio",
        host=host,
        port=port,
        log_level=settings.log_level.lower(),
        # The sans-I/O implementation: uvicorn's legacy one compresses every
        # frame for every watcher with costly zlib defaults (bench/stream.py).
        ws="websockets-sansio",
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
    commands.add_parser("export-schema", help="print the GraphQL schema (SDL)")
    commands.add_parser("makemigrations", help="write a migration for model changes")
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        parser.exit(2, f"interviewlm: {exc}\n")
    logging.basicConfig(
        level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )

    if args.command == "serve":
        _serve(settings, args.host, args.port)
    elif args.command == "migrate":
        asyncio.run(_migrate(settings))
    elif args.command == "seed-demo":
        print(json.dumps(asyncio.run(_seed_demo(settings))))
    elif args.command == "export-schema":
        sys.stdout.write(_export_schema())
    elif args.command == "makemigrations":
        _makemigrations()
