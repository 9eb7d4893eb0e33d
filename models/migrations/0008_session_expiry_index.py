from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """Index sessions' expiry: every replica's reaper looks for open sessions past it
    (``resolvers.sessions.expire_due``), and listings filter on it."""

    dependencies = [('models', '0007_storage_budget')]

    initial = False

    operations = [
        ops.AlterField(
            model_name='InterviewSession',
            name='expires_at',
            field=fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False),
        ),
    ]
