"""Walk the migration chain on a database that holds data at every step.

``python -m tests.migration_walk DATABASE_URL`` migrates an empty database one
migration at a time; after each step it inserts a row into every table that exists
then (found by introspection, so a new migration's tables are covered without
editing this file), so the next step always meets non-empty tables. At the head,
every row must still be there and read back through the current models, and a row
that predates a column must hold the value the model would have given it (its
``default``, else its ``db_default``). Prints one JSON line: the steps applied and
the problems found (empty when the chain upgrades cleanly).

A child process of its own: migrating swaps Tortoise's global connections.
"""

from __future__ import annotations

import asyncio
import datetime
import json
import sys
import uuid
from dataclasses import dataclass
from typing import Any

from tortoise import Tortoise
from tortoise.backends.base.client import BaseDBAsyncClient
from tortoise.migrations.api import migrate
from tortoise.migrations.executor import MigrationExecutor
from tortoise.models import Model

from models import APP_LABEL
from resolvers.database import tortoise_config

STAMP = datetime.datetime(2026, 2, 1, 12, 30, tzinfo=datetime.UTC)
RECORDER_TABLE = "tortoise_migrations"


@dataclass(frozen=True)
class Column:
    name: str
    sql_type: str
    required: bool  # NOT NULL with no database default: an INSERT must name it
    references: str | None  # the table a foreign key points at


@dataclass(frozen=True)
class Inserted:
    table: str
    pk: object
    columns: frozenset[str]  # the table's columns when the row was written


async def ordered_migrations(url: str) -> list[str]:
    """Every migration in the order ``migrate`` applies them to an empty database."""
    config = tortoise_config(url)
    await Tortoise.init(config=config, init_connections=False)
    executor = MigrationExecutor(Tortoise.get_connection("default"), config["apps"])
    steps = await executor.plan()
    await Tortoise.close_connections()
    return [f"{step.migration.app_label}.{step.migration.name}" for step in steps]


async def columns_of(db: BaseDBAsyncClient, table: str) -> list[Column]:
    if db.capabilities.dialect == "postgres":
        rows = await db.execute_query_dict(
            "SELECT c.column_name AS name, c.data_type AS type, "
            "c.is_nullable = 'NO' AND c.column_default IS NULL AND c.is_identity = 'NO' "
            "AS required, ("
            "  SELECT cf.relname FROM pg_constraint k JOIN pg_class cf ON cf.oid = k.confrelid"
            "  JOIN pg_attribute a ON a.attrelid = k.conrelid AND a.attnum = k.conkey[1]"
            "  WHERE k.contype = 'f' AND k.conrelid = quote_ident(c.table_name)::regclass"
            "  AND a.attname = c.column_name"
            ") AS refers FROM information_schema.columns c "
            "WHERE c.table_schema = current_schema() AND c.table_name = $1::text "
            "ORDER BY c.ordinal_position",
            [table],
        )
        return [Column(r["name"], r["type"], r["required"], r["refers"]) for r in rows]
    keys = {
        r["from"]: r["table"]
        for r in await db.execute_query_dict(f'PRAGMA foreign_key_list("{table}")')
    }
    return [
        Column(
            r["name"],
            r["type"].lower(),
            # An INTEGER PRIMARY KEY is the rowid: numbered by SQLite.
            bool(r["notnull"] or r["pk"])
            and r["dflt_value"] is None
            and not (r["pk"] and r["type"].upper() == "INTEGER"),
            keys.get(r["name"]),
        )
        for r in await db.execute_query_dict(f'PRAGMA table_info("{table}")')
    ]


async def tables_of(db: BaseDBAsyncClient) -> dict[str, list[Column]]:
    if db.capabilities.dialect == "postgres":
        sql = (
            "SELECT table_name AS name FROM information_schema.tables "
            "WHERE table_schema = current_schema() AND table_type = 'BASE TABLE'"
        )
    else:
        sql = "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
    names = sorted(r["name"] for r in await db.execute_query_dict(sql))
    return {name: await columns_of(db, name) for name in names if name != RECORDER_TABLE}


def parents_first(tables: dict[str, list[Column]]) -> list[str]:
    order: list[str] = []

    def visit(table: str) -> None:
        if table in order:
            return
        for column in tables[table]:
            if column.references and column.references != table:
                visit(column.references)
        order.append(table)

    for table in tables:
        visit(table)
    return order


def current_models() -> dict[str, type[Model]]:
    return {model._meta.db_table: model for model in Tortoise.apps[APP_LABEL].values()}


def field_of(model: type[Model] | None, column: str) -> Any:
    if model is None:
        return None
    for name, db_column in model._meta.fields_db_projection.items():
        if db_column == column:
            return model._meta.fields_map[name]
    return None


def sample(column: Column, field: Any, postgres: bool) -> object:
    """A value the column accepts and the current model reads back."""
    if enum_type := getattr(field, "enum_type", None):
        return next(iter(enum_type)).value
    kind = column.sql_type
    if "uuid" in kind or kind == "char(36)":
        return str(uuid.uuid4())
    if "json" in kind:
        default = getattr(field, "default", None)
        return json.dumps(default() if callable(default) else default or {})
    if "timestamp" in kind:
        return STAMP if postgres else STAMP.isoformat()
    if "int" in kind or "serial" in kind:
        return 1
    if "bool" in kind:
        return True
    if any(word in kind for word in ("real", "double", "float", "numeric", "decimal")):
        return 1.5
    if "blob" in kind or "bytea" in kind:
        return b"x"
    length = getattr(field, "max_length", None) or 32
    return uuid.uuid4().hex[:length]  # unique enough for UNIQUE text columns


def always_written(field: Any) -> bool:
    """Whether the application names the column in every INSERT: NOT NULL with no
    ``db_default`` (a SQL default added only for the rows already there, like 0010's
    placeholder on SQLite, is not what new rows get)."""
    return (
        field is not None
        and not field.null
        and not field.has_db_default()
        and not field.generated  # numbered by the database
    )


async def seed(db: BaseDBAsyncClient) -> list[Inserted]:
    """One row in every table, each foreign key pointing at this step's parent row."""
    postgres = db.capabilities.dialect == "postgres"
    models = current_models()
    tables = await tables_of(db)
    written: dict[str, object] = {}
    inserted: list[Inserted] = []
    for table in parents_first(tables):
        columns = tables[table]
        model = models.get(table)
        row = {
            c.name: written[c.references]
            if c.references
            else sample(c, field_of(model, c.name), postgres)
            for c in columns
            if c.required or c.references or always_written(field_of(model, c.name))
        }
        pk = model._meta.db_pk_column if model else columns[0].name
        marks = ", ".join(f"${i}" if postgres else "?" for i in range(1, len(row) + 1))
        names = ", ".join(f'"{name}"' for name in row)
        returned = await db.execute_query_dict(
            f'INSERT INTO "{table}" ({names}) VALUES ({marks}) RETURNING "{pk}"',
            list(row.values()),
        )
        written[table] = returned[0][pk]
        inserted.append(Inserted(table, written[table], frozenset(c.name for c in columns)))
    return inserted


def expected_for_old_rows(field: Any) -> tuple[bool, object]:
    """(whether it is known, the value) a column added after a row was written holds."""
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return False, None  # filled by its migration (e.g. from another column)
    if field.default is not None:
        return True, field.default() if callable(field.default) else field.default
    if field.has_db_default() and isinstance(field.db_default, (bool, int, float, str)):
        return True, field.db_default
    return field.null, None  # NOT NULL with neither: its migration fills it


async def check_head(inserted: list[Inserted]) -> tuple[list[str], set[str]]:
    """The problems found, and the columns checked on rows older than them."""
    problems: list[str] = []
    checked: set[str] = set()
    models = current_models()
    for row in inserted:
        model = models.get(row.table)
        if model is None:
            problems.append(f"{row.table}: no model at the head reads it")
            continue
        try:
            found = await model.get_or_none(pk=row.pk)
        except Exception as error:  # any decoding error is the finding
            problems.append(f"{row.table} {row.pk}: unreadable: {error!r}")
            continue
        if found is None:
            problems.append(f"{row.table} {row.pk}: lost")
            continue
        for name, column in model._meta.fields_db_projection.items():
            if column in row.columns:
                continue
            known, expected = expected_for_old_rows(model._meta.fields_map[name])
            if known:
                checked.add(f"{row.table}.{column}")
            if known and getattr(found, name) != expected:
                problems.append(
                    f"{row.table}.{column} of a row older than the column: "
                    f"{getattr(found, name)!r}, the model's default is {expected!r}"
                )
    return problems, checked


async def walk(url: str) -> dict[str, Any]:
    config = tortoise_config(url)
    applied: list[str] = []
    inserted: list[Inserted] = []
    for target in await ordered_migrations(url):
        try:
            await migrate(config=config, target=target)
        except Exception as error:  # the failing step is the finding
            await Tortoise.close_connections()
            return {"applied": applied, "problems": [f"{target}: {error!r}"]}
        applied.append(target)
        await Tortoise.close_connections()
        await Tortoise.init(config=config)
        inserted += await seed(Tortoise.get_connection("default"))
        await Tortoise.close_connections()
    await Tortoise.init(config=config)
    problems, checked = await check_head(inserted)
    await Tortoise.close_connections()
    return {
        "applied": applied,
        "tables": sorted({row.table for row in inserted}),
        "old_rows_checked": sorted(checked),
        "problems": problems,
    }


if __name__ == "__main__":
    print(json.dumps(asyncio.run(walk(sys.argv[1]))))
