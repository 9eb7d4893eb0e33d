from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """Replica leases (issue 13): a row per server process with its heartbeat, so that the
    terminals, runs and sandboxes of a replica that stopped answering are taken over by the
    others within a bounded time (``resolvers.leases``). A new table: nothing to backfill;
    records of owners without a row keep the start-up rule (``resolvers.reaper``)."""

    dependencies = [('models', '0014_greenhouse')]

    initial = False

    operations = [
        ops.CreateModel(
            name='Replica',
            fields=[
                ('id', fields.CharField(primary_key=True, unique=True, db_index=True, max_length=300)),
                ('started_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('heartbeat_at', fields.DatetimeField(auto_now=False, auto_now_add=False)),
                ('expires_at', fields.DatetimeField(db_index=True, auto_now=False, auto_now_add=False)),
                ('stopped_at', fields.DatetimeField(null=True, auto_now=False, auto_now_add=False)),
            ],
            options={'table': 'replica', 'app': 'models', 'pk_attr': 'id'},
            bases=['Model'],
        ),
    ]
