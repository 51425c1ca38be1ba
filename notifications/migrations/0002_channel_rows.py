"""One ChannelState row per channel, so the admin lists every channel (and its test action) from the start."""

from django.db import migrations

CHANNELS = ("webhook", "email", "telegram")


def create_rows(apps, schema_editor):  # type: ignore[no-untyped-def]
    ChannelState = apps.get_model("notifications", "ChannelState")
    for channel in CHANNELS:
        ChannelState.objects.get_or_create(channel=channel)


class Migration(migrations.Migration):
    dependencies = [("notifications", "0001_initial")]

    operations = [migrations.RunPython(create_rows, migrations.RunPython.noop)]
