from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    dependencies = [('models', '0005_claude_runs')]

    initial = False

    operations = [
        ops.AddField(
            model_name='ClaudeRun',
            name='token_hash',
            field=fields.CharField(null=True, unique=True, max_length=64),
        ),
        ops.AddField(
            model_name='ClaudeRun',
            name='token_expires_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        # db_default: existing runs get 0 (ADD COLUMN ... NOT NULL needs a SQL default).
        ops.AddField(
            model_name='ClaudeRun',
            name='api_requests',
            field=fields.IntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='ClaudeRun',
            name='input_tokens',
            field=fields.BigIntField(default=0, db_default=0),
        ),
        ops.AddField(
            model_name='ClaudeRun',
            name='output_tokens',
            field=fields.BigIntField(default=0, db_default=0),
        ),
    ]
