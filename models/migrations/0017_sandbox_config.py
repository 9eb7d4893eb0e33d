from tortoise import fields, migrations
from tortoise.migrations import operations as ops


class Migration(migrations.Migration):
    """Sandbox configuration from the API (issue 14): a question's default sandbox
    environment, and the configuration each sandbox was started with (a restart keeps it).
    Nullable columns: existing rows mean "the defaults"."""

    dependencies = [('models', '0016_s3_sync')]

    initial = False

    operations = [
        ops.AddField(model_name='Question', name='environment_json', field=fields.TextField(null=True, unique=False)),
        ops.AddField(model_name='SandboxRecord', name='config_json', field=fields.TextField(null=True, unique=False)),
    ]
