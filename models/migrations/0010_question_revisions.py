from tortoise import fields, migrations
from tortoise.migrations import operations as ops
from tortoise.migrations.constraints import UniqueConstraint

from models.question import Difficulty


class AddFieldFilledFrom(ops.AddField):
    """Add a NOT NULL column whose value, for the rows already there, is another column's.

    A plain AddField emits ``ADD COLUMN ... NOT NULL`` with no default, which fails on a
    table that has rows (SQLite and PostgreSQL alike); and a default written into the
    model would be a meaningless value. So: add it nullable (SQLite: with a placeholder
    default, as SQLite cannot add NOT NULL later without rebuilding the table, and a
    rebuild of ``question`` would cascade-delete its languages and test cases), fill it,
    then make it NOT NULL (PostgreSQL). The migration state is AddField's.
    """

    def __init__(self, model_name: str, name: str, field: fields.Field, source: str) -> None:  # type: ignore[type-arg]
        super().__init__(model_name, name, field)
        self.source = source

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):  # type: ignore[no-untyped-def]
        if not state_editor:
            return
        model = new_state.apps.get_model(f"{app_label}.{self.model_name}")
        table = model._meta.db_table
        dialect = state_editor.client.capabilities.dialect
        sql_type = self.field.get_for_dialect(dialect, "SQL_TYPE")
        if dialect == "postgres":
            statements = [
                f'ALTER TABLE "{table}" ADD COLUMN "{self.name}" {sql_type}',
                f'UPDATE "{table}" SET "{self.name}" = "{self.source}"',
                f'ALTER TABLE "{table}" ALTER COLUMN "{self.name}" SET NOT NULL',
            ]
        else:
            statements = [
                f'ALTER TABLE "{table}" ADD COLUMN "{self.name}" {sql_type} NOT NULL DEFAULT \'\'',
                f'UPDATE "{table}" SET "{self.name}" = "{self.source}"',
            ]
        for statement in statements:
            await state_editor._run_sql(statement)


class Migration(migrations.Migration):
    """Question revisions (each a row of its own, sharing ``lineage_id``), archiving, tags
    and difficulty. Every existing question becomes revision 1 of its own lineage."""

    dependencies = [('models', '0009_file_versions')]

    initial = False

    operations = [
        ops.AlterModelOptions(
            name='Question',
            options={'table': 'question', 'app': 'models', 'unique_together': (('lineage_id', 'revision'),), 'pk_attr': 'id', 'table_description': 'One revision of a question.'},
        ),
        AddFieldFilledFrom(model_name='Question', name='lineage_id', field=fields.UUIDField(), source='id'),
        ops.AddField(model_name='Question', name='revision', field=fields.IntField(db_default=1)),
        ops.AddField(model_name='Question', name='is_latest', field=fields.BooleanField(db_default=True)),
        ops.AddField(
            model_name='Question',
            name='difficulty',
            field=fields.CharEnumField(null=True, description='EASY: EASY\nMEDIUM: MEDIUM\nHARD: HARD', enum_type=Difficulty, max_length=10),
        ),
        ops.AddField(model_name='Question', name='tags_json', field=fields.TextField(db_default='[]', unique=False)),
        ops.AddField(
            model_name='Question',
            name='archived_at',
            field=fields.DatetimeField(null=True, auto_now=False, auto_now_add=False),
        ),
        AddFieldFilledFrom(
            model_name='Question',
            name='revised_at',
            field=fields.DatetimeField(auto_now=False, auto_now_add=True),
            source='created_at',
        ),
        ops.AddConstraint(
            model_name='Question',
            constraint=UniqueConstraint(fields=('lineage_id', 'revision'), name=None),
        ),
    ]
