"""SafetyOverride moves from galfriday_site to trading (state only: the table `galfriday_site_safetyoverride` keeps
its name and its rows). Its content type follows it, so the permissions on it (`resume_safety_halt` and the model
permissions) and the grants of them stay."""

from django.db import migrations, models


def _content_type_to(app_label: str, from_label: str):  # type: ignore[no-untyped-def]
    def move(apps, schema_editor):  # type: ignore[no-untyped-def]
        content_type = apps.get_model("contenttypes", "ContentType")
        if content_type.objects.filter(app_label=app_label, model="safetyoverride").exists():
            return
        content_type.objects.filter(app_label=from_label, model="safetyoverride").update(app_label=app_label)

    return move


class Migration(migrations.Migration):
    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("galfriday_site", "0001_api_tokens_and_safety_overrides"),
        ("trading", "0008_decision_explanations_instrument_fees"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="SafetyOverride",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("actor", models.CharField(max_length=200)),
                        ("reason", models.TextField()),
                        ("halted_by", models.CharField(max_length=200)),
                        ("halt_reason", models.TextField(blank=True, default="")),
                        (
                            "open_critical",
                            models.JSONField(default=list, help_text="Ids of the critical discrepancies left open."),
                        ),
                    ],
                    options={
                        "db_table": "galfriday_site_safetyoverride",
                        "permissions": [
                            ("resume_safety_halt", "Can resume trading after a reconciliation, start-up or risk halt")
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(
            _content_type_to("trading", "galfriday_site"), _content_type_to("galfriday_site", "trading")
        ),
    ]
