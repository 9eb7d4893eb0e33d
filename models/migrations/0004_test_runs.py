from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.testrun import TestRunStatus, Verdict
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    dependencies = [('models', '0003_terminals')]

    initial = False

    operations = [
        ops.CreateModel(
            name='TestRun',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('session', fields.ForeignKeyField('models.InterviewSession', source_field='session_id', db_constraint=True, to_field='id', related_name='test_runs', on_delete=OnDelete.CASCADE)),
                ('language', fields.CharField(max_length=20)),
                ('status', fields.CharEnumField(default=TestRunStatus.QUEUED, description='QUEUED: QUEUED\nRUNNING: RUNNING\nFINISHED: FINISHED\nERROR: ERROR', enum_type=TestRunStatus, max_length=10)),
                ('live_key', fields.UUIDField(null=True, unique=True)),
                ('owner', fields.CharField(max_length=300)),
                ('log_seq', fields.BigIntField(default=0)),
                ('total', fields.IntField(default=0)),
                ('passed', fields.IntField(default=0)),
                ('failed', fields.IntField(default=0)),
                ('duration_ms', fields.IntField(null=True)),
                ('compile_error', fields.TextField(null=True, unique=False)),
                ('error', fields.TextField(null=True, unique=False)),
                ('files', fields.JSONField(default=dict, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('started_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
                ('finished_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'test_run', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
        ops.CreateModel(
            name='TestCaseResult',
            fields=[
                ('id', fields.BigIntField(generated=True, primary_key=True, unique=True, db_index=True)),
                ('run', fields.ForeignKeyField('models.TestRun', source_field='run_id', db_constraint=True, to_field='id', related_name='results', on_delete=OnDelete.CASCADE)),
                ('case', fields.ForeignKeyField('models.TestCase', source_field='case_id', null=True, db_constraint=True, to_field='id', related_name='results', on_delete=OnDelete.SET_NULL)),
                ('position', fields.IntField()),
                ('name', fields.CharField(max_length=200)),
                ('hidden', fields.BooleanField()),
                ('verdict', fields.CharEnumField(description='PASSED: PASSED\nWRONG_ANSWER: WRONG_ANSWER\nRUNTIME_ERROR: RUNTIME_ERROR\nTIMEOUT: TIMEOUT\nMEMORY_LIMIT: MEMORY_LIMIT\nCOMPILE_ERROR: COMPILE_ERROR', enum_type=Verdict, max_length=20)),
                ('duration_ms', fields.IntField(null=True)),
                ('actual', fields.TextField(null=True, unique=False)),
                ('output', fields.TextField(null=True, unique=False)),
                ('error', fields.TextField(null=True, unique=False)),
                ('signal', fields.IntField(null=True)),
            ],
            options={'table': 'test_case_result', 'app': 'models', 'unique_together': (('run', 'position'),), 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
