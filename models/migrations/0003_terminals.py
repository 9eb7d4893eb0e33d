from tortoise import migrations
from tortoise.migrations import operations as ops
from models.terminal import TerminalState
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0002_sandboxes_and_files')]

    initial = False

    operations = [
        ops.CreateModel(
            name='TerminalRecord',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('session', fields.ForeignKeyField('models.InterviewSession', source_field='session_id', db_constraint=True, to_field='id', related_name='terminals', on_delete=OnDelete.CASCADE)),
                ('sandbox', fields.ForeignKeyField('models.SandboxRecord', source_field='sandbox_id', db_constraint=True, to_field='id', related_name='terminals', on_delete=OnDelete.CASCADE)),
                ('owner', fields.CharField(max_length=300)),
                ('state', fields.CharEnumField(default=TerminalState.OPEN, description='OPEN: OPEN\nCLOSED: CLOSED', enum_type=TerminalState, max_length=10)),
                ('cols', fields.IntField()),
                ('rows', fields.IntField()),
                ('exit_code', fields.IntField(null=True)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('closed_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'terminal', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
