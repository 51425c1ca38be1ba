"""The stage history is append-only: on PostgreSQL a trigger refuses UPDATE and DELETE of stage events
(TRUNCATE, used by test flushes and deliberate maintenance, is not a row operation). SQLite relies on the
services and the read-only admin."""

from django.db import migrations

CREATE = """
CREATE OR REPLACE FUNCTION models_registry_stageevent_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'models_registry_stageevent is append-only (% refused)', TG_OP;
END;
$$ LANGUAGE plpgsql;
DROP TRIGGER IF EXISTS models_registry_stageevent_append_only ON models_registry_stageevent;
CREATE TRIGGER models_registry_stageevent_append_only
    BEFORE UPDATE OR DELETE ON models_registry_stageevent
    FOR EACH ROW EXECUTE FUNCTION models_registry_stageevent_append_only();
"""

DROP = """
DROP TRIGGER IF EXISTS models_registry_stageevent_append_only ON models_registry_stageevent;
DROP FUNCTION IF EXISTS models_registry_stageevent_append_only();
"""


def create_trigger(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(CREATE, params=None)


def drop_trigger(apps, schema_editor):  # type: ignore[no-untyped-def]
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(DROP, params=None)


class Migration(migrations.Migration):
    dependencies = [("models_registry", "0001_initial")]

    operations = [migrations.RunPython(create_trigger, drop_trigger)]
