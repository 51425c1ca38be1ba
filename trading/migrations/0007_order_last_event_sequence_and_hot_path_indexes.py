"""The order's event counter (so recording an order event needs no MAX(sequence) query), backfilled from the events
already recorded; and the indexes the risk check's reads use (orders submitted in the last minute, fills today)."""

from django.db import migrations, models

BACKFILL = """
UPDATE trading_order SET last_event_sequence = COALESCE(
    (SELECT MAX(e.sequence) FROM trading_orderevent e WHERE e.order_id = trading_order.id), 0)
"""


class Migration(migrations.Migration):
    dependencies = [
        ("trading", "0006_order_send_attempts"),
    ]

    operations = [
        migrations.AddField(
            model_name="order",
            name="last_event_sequence",
            field=models.PositiveIntegerField(default=0, editable=False),
        ),
        migrations.RunSQL(BACKFILL, reverse_sql=migrations.RunSQL.noop),
        migrations.AddIndex(
            model_name="fill",
            index=models.Index(fields=["executed_at"], name="fill_executed_at_idx"),
        ),
        migrations.AddIndex(
            model_name="order",
            index=models.Index(fields=["submitted_at"], name="order_submitted_at_idx"),
        ),
    ]
