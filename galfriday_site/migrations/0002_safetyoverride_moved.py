"""SafetyOverride now belongs to the `trading` app (state only: the table and its rows stay)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("galfriday_site", "0001_api_tokens_and_safety_overrides"),
        ("trading", "0009_safetyoverride_moved"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="SafetyOverride")],
            database_operations=[],
        ),
    ]
