import json
from datetime import UTC, datetime

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


async def backfill_session_blobs(apps, schema_editor) -> None:  # type: ignore[no-untyped-def]
    """Refer every blob an existing recording uses to its session (blob collection keeps them)."""
    if schema_editor.collect_sql:
        return  # sqlmigrate: data, not schema
    client = schema_editor.client
    rows = await client.execute_query_dict(
        "SELECT e.session_id, e.payload FROM session_event e WHERE e.type = 'file.written'"
    )
    pairs: dict[tuple[str, str], int] = {}
    for row in rows:
        payload = row["payload"]
        if isinstance(payload, (str, bytes)):
            payload = json.loads(payload)
        sha = payload.get("sha256") if isinstance(payload, dict) else None
        if isinstance(sha, str):
            pairs[(str(row["session_id"]), sha)] = int(payload.get("size") or 0)
    for row in await client.execute_query_dict(
        "SELECT session_id, sha256, size FROM file_snapshot WHERE sha256 IS NOT NULL"
    ):
        pairs.setdefault((str(row["session_id"]), row["sha256"]), int(row["size"]))
    if not pairs:
        return
    mark = "$%d" if client.capabilities.dialect == "postgres" else "?%d"
    now = datetime.now(UTC)
    for (session_id, sha), size in pairs.items():
        values = ", ".join(mark % i for i in range(1, 5))
        await client.execute_query(
            "INSERT INTO session_blob (session_id, sha256, size, created_at) "
            f"VALUES ({values}) ON CONFLICT DO NOTHING",
            [session_id, sha, size, now],
        )

class Migration(migrations.Migration):
    dependencies = [('models', '0006_claude_usage')]

    initial = False

    operations = [
        ops.CreateModel(
            name='SessionBlob',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('session', fields.ForeignKeyField('models.InterviewSession', source_field='session_id', db_constraint=True, to_field='id', related_name='blobs', on_delete=OnDelete.CASCADE)),
                ('sha256', fields.CharField(db_index=True, max_length=64)),
                ('size', fields.BigIntField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'session_blob', 'app': 'models', 'unique_together': (('session', 'sha256'),), 'pk_attr': 'id', 'table_description': "A blob that one session's recording refers to (any version of any of its files)."},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SessionStorage',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('session', fields.OneToOneField('models.InterviewSession', source_field='session_id', db_constraint=True, to_field='id', related_name='storage', on_delete=OnDelete.CASCADE)),
                ('output_bytes', fields.BigIntField(default=0)),
                ('output_capped', fields.BooleanField(default=False)),
                ('blob_bytes', fields.BigIntField(default=0)),
                ('budget_reached', fields.BooleanField(default=False)),
            ],
            options={'table': 'session_storage', 'app': 'models', 'pk_attr': 'id', 'table_description': "What one session's recording holds, against its caps (one row per session, made lazily)."},
            bases=['Model'],
        ),
        ops.RunPython(backfill_session_blobs),
    ]
