from tortoise import migrations
from tortoise.migrations import operations as ops
from models.sandbox import SandboxState
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0001_initial')]

    initial = False

    operations = [
        ops.CreateModel(
            name='FileBlob',
            fields=[
                ('sha256', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=64)),
                ('size', fields.BigIntField()),
                ('content', fields.BinaryField()),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'file_blob', 'app': 'models', 'pk_attr': 'sha256'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='FileSnapshot',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('session', fields.ForeignKeyField('models.InterviewSession', source_field='session_id', db_constraint=True, to_field='id', related_name='files', on_delete=OnDelete.CASCADE)),
                ('path', fields.CharField(max_length=1024)),
                ('sha256', fields.CharField(null=True, max_length=64)),
                ('size', fields.BigIntField(default=0)),
                ('seq', fields.BigIntField()),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'file_snapshot', 'app': 'models', 'unique_together': (('session', 'path'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='SandboxRecord',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='sandboxes', on_delete=OnDelete.CASCADE)),
                ('session', fields.ForeignKeyField('models.InterviewSession', source_field='session_id', db_constraint=True, to_field='id', related_name='sandboxes', on_delete=OnDelete.CASCADE)),
                ('backend', fields.CharField(max_length=20)),
                ('backend_id', fields.CharField(null=True, max_length=200)),
                ('owner', fields.CharField(max_length=300)),
                ('live_key', fields.UUIDField(null=True, unique=True)),
                ('state', fields.CharEnumField(default=SandboxState.STARTING, description='STARTING: STARTING\nRUNNING: RUNNING\nTERMINATED: TERMINATED\nERROR: ERROR', enum_type=SandboxState, max_length=20)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('last_activity_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('ended_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('end_reason', fields.CharField(null=True, max_length=200)),
                ('workspace_removed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'sandbox', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
