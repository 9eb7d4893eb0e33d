import json

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops

_FILE_EVENTS = "('file.written', 'file.deleted')"


def _payload(raw: object) -> dict[str, object]:
    if isinstance(raw, (str, bytes)):
        raw = json.loads(raw)
    return raw if isinstance(raw, dict) else {}


def versions_of(rows: list[dict[str, object]]) -> list[tuple[str, int, str | None, int]]:
    """(path, seq, sha256, size) rows from one session's file events, in seq order.

    Replays the events as FileRecorder records them: a written file is a version,
    and a deletion is a deleted version of every live path at or under it.
    """
    live: set[str] = set()
    versions: list[tuple[str, int, str | None, int]] = []
    for row in rows:
        payload, seq = _payload(row["payload"]), int(str(row["seq"]))
        path = payload.get("path")
        if not isinstance(path, str):
            continue
        if row["type"] == "file.written":
            sha, size = payload.get("sha256"), payload.get("size")
            if isinstance(sha, str):
                live.add(path)
                versions.append((path, seq, sha, size if isinstance(size, int) else 0))
            continue
        gone = sorted(p for p in live if p == path or p.startswith(path + "/"))
        live.difference_update(gone)
        versions += [(p, seq, None, 0) for p in gone]
    return versions


async def backfill_file_versions(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    """Index the file versions of existing recordings, from their file events."""
    if schema_editor.collect_sql:
        return  # sqlmigrate: data, not schema
    client = schema_editor.client
    sessions = await client.execute_query_dict(
        f"SELECT DISTINCT session_id FROM session_event WHERE type IN {_FILE_EVENTS}"
    )
    mark = "$%d" if client.capabilities.dialect == "postgres" else "?%d"
    insert = (
        "INSERT INTO file_version (session_id, path, seq, sha256, size) "
        f"VALUES ({', '.join(mark % i for i in range(1, 6))}) ON CONFLICT DO NOTHING"
    )
    for session in sessions:
        session_id = session["session_id"]
        rows = await client.execute_query_dict(
            "SELECT seq, type, payload FROM session_event "
            f"WHERE session_id = {mark % 1} AND type IN {_FILE_EVENTS} ORDER BY seq",
            [session_id],
        )
        versions = versions_of(rows)
        if versions:
            await client.execute_many(
                insert, [[str(session_id), path, seq, sha, size] for path, seq, sha, size in versions]
            )


class Migration(migrations.Migration):
    """Per-session file versions: ``file(atSeq)`` and ``snapshot(atSeq)`` in one index lookup.

    Existing recordings are backfilled from their file events."""

    dependencies = [('models', '0008_session_expiry_index')]

    initial = False

    operations = [
        ops.CreateModel(
            name='FileVersion',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('session', fields.ForeignKeyField('models.InterviewSession', source_field='session_id', db_constraint=True, to_field='id', related_name='file_versions', on_delete=OnDelete.CASCADE)),
                ('path', fields.CharField(max_length=1024)),
                ('seq', fields.BigIntField()),
                ('sha256', fields.CharField(null=True, max_length=64)),
                ('size', fields.BigIntField(default=0)),
            ],
            options={'table': 'file_version', 'app': 'models', 'unique_together': (('session', 'path', 'seq'),), 'pk_attr': 'id', 'table_description': 'One version of one path: what the path held right after event ``seq``.'},
            bases=['Model'],
        ),
        ops.RunPython(backfill_file_versions),
    ]
