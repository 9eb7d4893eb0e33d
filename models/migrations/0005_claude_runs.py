from tortoise import migrations
from tortoise.migrations import operations as ops
from models.claude import ClaudeRunStatus
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0004_test_runs')]

    initial = False

    operations = [
        ops.CreateModel(
            name='ClaudeRun',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('session', fields.ForeignKeyField('models.InterviewSession', source_field='session_id', db_constraint=True, to_field='id', related_name='claude_runs', on_delete=OnDelete.CASCADE)),
                ('prompt', fields.TextField(unique=False)),
                ('status', fields.CharEnumField(default=ClaudeRunStatus.RUNNING, description='RUNNING: RUNNING\nSUCCEEDED: SUCCEEDED\nFAILED: FAILED\nCANCELLED: CANCELLED', enum_type=ClaudeRunStatus, max_length=10)),
                ('live_key', fields.UUIDField(null=True, unique=True)),
                ('owner', fields.CharField(max_length=300)),
                ('log_seq', fields.BigIntField(default=0)),
                ('conversation_id', fields.CharField(null=True, max_length=100)),
                ('error', fields.TextField(null=True, unique=False)),
                ('cost_usd', fields.FloatField(null=True)),
                ('num_turns', fields.IntField(null=True)),
                ('duration_ms', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'claude_run', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
