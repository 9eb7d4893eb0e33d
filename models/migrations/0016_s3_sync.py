from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """Workspaces in S3 (issue 14): a question may name a starter prefix in the bucket
    (``resolvers.s3sync``). Nullable: existing questions have none."""

    dependencies = [('models', '0015_replica_leases')]

    initial = False

    operations = [
        ops.AddField(
            model_name='Question',
            name='starter_s3_prefix',
            field=fields.CharField(null=True, max_length=500),
        ),
    ]
