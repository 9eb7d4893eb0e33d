from tortoise import fields, migrations
from tortoise.indexes import Index
from tortoise.migrations import operations as ops


class IndexFieldInPlace(ops.AlterField):
    """AlterField that only adds ``db_index``, as a ``CREATE INDEX`` on every dialect.

    Tortoise's SQLite editor would rebuild the table (create a copy, drop the original,
    rename); dropping ``interview_session`` with foreign keys on cascade-deletes every
    session's events, tokens, files, sandboxes, terminals, test and Claude runs, and the
    rebuilt table loses its other indexes. PostgreSQL already does just this.
    """

    async def database_forward(self, app_label, old_state, new_state, state_editor=None):  # type: ignore[no-untyped-def]
        if not state_editor:
            return
        if state_editor.client.capabilities.dialect != "sqlite":
            await super().database_forward(app_label, old_state, new_state, state_editor)
            return
        model = new_state.apps.get_model(f"{app_label}.{self.model_name}")
        await state_editor.add_index(model, Index(fields=(self.name,)))

    async def database_backward(self, app_label, old_state, new_state, state_editor=None):  # type: ignore[no-untyped-def]
        if not state_editor:
            return
        if state_editor.client.capabilities.dialect != "sqlite":
            await super().database_backward(app_label, old_state, new_state, state_editor)
            return
        model = old_state.apps.get_model(f"{app_label}.{self.model_name}")
        await state_editor.remove_index(model, Index(fields=(self.name,)))


class Migration(migrations.Migration):
    """Index sessions' expiry: every replica's reaper looks for open sessions past it
    (``resolvers.sessions.expire_due``), and listings filter on it."""

    dependencies = [('models', '0007_storage_budget')]

    initial = False

    operations = [
        IndexFieldInPlace(
            model_name='InterviewSession',
            name='expires_at',
            field=fields.DatetimeField(null=True, db_index=True, auto_now=False, auto_now_add=False),
        ),
    ]
