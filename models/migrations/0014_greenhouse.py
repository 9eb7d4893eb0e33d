from uuid import uuid4

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """Greenhouse's ``send_test`` orders: one row per (account, application, test), unique,
    which is what makes a repeated ``send_test`` answer the same session."""

    dependencies = [('models', '0013_report_links')]

    initial = False

    operations = [
        ops.CreateModel(
            name='GreenhouseInterview',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='greenhouse_interviews', on_delete=OnDelete.CASCADE)),
                ('session', fields.OneToOneField('models.InterviewSession', source_field='session_id', db_constraint=True, to_field='id', related_name='greenhouse_interview', on_delete=OnDelete.CASCADE)),
                ('application_key', fields.CharField(max_length=500)),
                ('partner_test_id', fields.UUIDField()),
                ('callback_url', fields.CharField(max_length=2000)),
                ('greenhouse_profile_url', fields.CharField(null=True, max_length=2000)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'greenhouse_interview', 'app': 'models', 'unique_together': (('account', 'application_key', 'partner_test_id'),), 'pk_attr': 'id', 'table_description': 'One ``send_test``: a Greenhouse application given one test, and the session it got.'},
            bases=['Model'],
        ),
    ]
