from uuid import uuid4

from tortoise import fields, migrations
from tortoise.fields.base import OnDelete
from tortoise.migrations import operations as ops

from models.webhook import EndpointKind


class Migration(migrations.Migration):
    """Greenhouse's ``send_test`` orders: one row per (account, application, test), unique,
    which is what makes a repeated ``send_test`` answer the same session; each with its
    callback ``url`` as an outbox endpoint of the kind ``greenhouse_callback``."""

    dependencies = [('models', '0013_report_links')]

    initial = False

    operations = [
        ops.AddField(
            model_name='WebhookEndpoint',
            name='kind',
            field=fields.CharEnumField(default=EndpointKind.STANDARD_WEBHOOKS, db_default=EndpointKind.STANDARD_WEBHOOKS, db_index=True, description='STANDARD_WEBHOOKS: standard_webhooks\nGREENHOUSE_CALLBACK: greenhouse_callback', enum_type=EndpointKind, max_length=20),
        ),
        ops.CreateModel(
            name='GreenhouseInterview',
            fields=[
                ('id', fields.UUIDField(primary_key=True, default=uuid4, unique=True, db_index=True)),
                ('account', fields.ForeignKeyField('models.Account', source_field='account_id', db_constraint=True, to_field='id', related_name='greenhouse_interviews', on_delete=OnDelete.CASCADE)),
                ('session', fields.OneToOneField('models.InterviewSession', source_field='session_id', db_constraint=True, to_field='id', related_name='greenhouse_interview', on_delete=OnDelete.CASCADE)),
                ('application_key', fields.CharField(max_length=500)),
                ('partner_test_id', fields.UUIDField()),
                ('callback', fields.OneToOneField('models.WebhookEndpoint', source_field='callback_id', db_constraint=True, to_field='id', related_name='greenhouse_interview', on_delete=OnDelete.CASCADE)),
                ('greenhouse_profile_url', fields.CharField(null=True, max_length=2000)),
                ('created_at', fields.DatetimeField(auto_now=False, auto_now_add=True)),
            ],
            options={'table': 'greenhouse_interview', 'app': 'models', 'unique_together': (('account', 'application_key', 'partner_test_id'),), 'pk_attr': 'id', 'table_description': 'One ``send_test``: a Greenhouse application given one test, and the session it got.'},
            bases=['Model'],
        ),
    ]
