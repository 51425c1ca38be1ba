"""TimeSeriesPoint now belongs to the `timeseries` app (state only: the table and its rows stay)."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("ingest", "0003_backfill_record"), ("timeseries", "0001_initial")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.DeleteModel(name="TimeSeriesPoint")],
            database_operations=[],
        ),
    ]
