"""The time-series table moves from the ingest app to this one: state only, the table `ingest_timeseriespoint`
keeps its name and its rows."""

from django.db import migrations, models


class Migration(migrations.Migration):
    initial = True

    dependencies = [("ingest", "0003_backfill_record")]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="TimeSeriesPoint",
                    fields=[
                        ("id", models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name="ID")),
                        ("measurement", models.CharField(max_length=100)),
                        (
                            "series_key",
                            models.CharField(help_text="Measurement and sorted tags: the series identity.", max_length=500),
                        ),
                        ("tags", models.JSONField(default=dict)),
                        (
                            "fields",
                            models.JSONField(
                                help_text='Typed values, e.g. {"close": ["d", "29430.2"], "trades": ["i", 12]}.'
                            ),
                        ),
                        ("time", models.DateTimeField()),
                    ],
                    options={
                        "db_table": "ingest_timeseriespoint",
                        "indexes": [models.Index(fields=["measurement", "time"], name="ts_point_measurement_time")],
                        "constraints": [
                            models.UniqueConstraint(fields=("series_key", "time"), name="ts_point_unique_series_time")
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
    ]
