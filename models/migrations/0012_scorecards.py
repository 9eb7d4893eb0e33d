from tortoise import migrations
from tortoise.migrations import operations as ops
import functools
from json import dumps, loads
from models.scorecard import Recommendation
from tortoise.fields.base import OnDelete
from uuid import uuid4
from tortoise import fields

class Migration(migrations.Migration):
    """Scorecards (resolvers.scorecards): one per interviewer and session."""

    dependencies = [('models', '0011_webhooks')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Scorecard',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('session', fields.ForeignKeyField('models.InterviewSession', source_field='session_id', db_constraint=True, to_field='id', related_name='scorecards', on_delete=OnDelete.CASCADE)),
                ('author', fields.ForeignKeyField('models.User', source_field='author_id', db_constraint=True, to_field='id', related_name='scorecards', on_delete=OnDelete.CASCADE)),
                ('recommendation', fields.CharEnumField(description='STRONG_YES: STRONG_YES\nYES: YES\nNO: NO\nSTRONG_NO: STRONG_NO', enum_type=Recommendation, max_length=10)),
                ('ratings', fields.JSONField(default=list, encoder=functools.partial(dumps, separators=(',', ':')), decoder=loads)),
                ('summary', fields.TextField(default='', unique=False)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
                ('updated_at', fields.DatetimeField(auto_now=True, auto_now_add=False)),
            ],
            options={'table': 'scorecard', 'app': 'models', 'unique_together': (('session', 'author'),), 'pk_attr': 'id', 'table_description': 'One per interviewer and session: submitting again replaces it (same row, same id).'},
            bases=['Model'],
        ),
    ]
