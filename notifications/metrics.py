"""What `/metrics` says about notifications (registered by the app with `galfriday_site.metrics.register_collector`):
messages per channel and state, the age of the oldest pending message per channel (a channel down shows as a
growing age), the alert events logged per change, which channels are configured, and this process's enqueue
failures. Each figure is one cheap aggregate query."""

from __future__ import annotations

from collections.abc import Iterator

from django.db.models import Count, Min
from django.utils import timezone
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from notifications import config, dispatch
from notifications.models import AlertEvent, Channel, Notification

PREFIX = "galfriday"


class NotificationCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        messages = GaugeMetricFamily(
            f"{PREFIX}_notifications", "Notification messages per channel and state", labels=["channel", "state"]
        )
        counts = {
            (row["channel"], row["state"]): row["n"]
            for row in Notification.objects.values("channel", "state").annotate(n=Count("id")).order_by()
        }
        for channel in Channel.values:
            for state in Notification.State.values:
                messages.add_metric([channel, state], counts.get((channel, state), 0))
        yield messages

        now = timezone.now()
        oldest = GaugeMetricFamily(
            f"{PREFIX}_notifications_oldest_pending_age_seconds",
            "Age of the oldest due message not yet delivered (0: none)",
            labels=["channel"],
        )
        due = dict(
            Notification.objects.filter(state=Notification.State.PENDING, deliver_after__lte=now)
            .values("channel")
            .annotate(first=Min("deliver_after"))
            .values_list("channel", "first")
        )
        for channel in Channel.values:
            first = due.get(channel)
            oldest.add_metric([channel], (now - first).total_seconds() if first else 0.0)
        yield oldest

        events = CounterMetricFamily(
            f"{PREFIX}_notification_events", "Alert events logged by the notifications, per change", labels=["change"]
        )
        for change, n in AlertEvent.objects.values_list("change").annotate(n=Count("id")).order_by():
            events.add_metric([change], n)
        yield events

        configured = GaugeMetricFamily(
            f"{PREFIX}_notification_channel_configured", "1 when the channel is configured", labels=["channel"]
        )
        for channel in Channel.values:
            configured.add_metric([channel], 1.0 if config.channel_configured(channel) else 0.0)
        yield configured

        yield CounterMetricFamily(
            f"{PREFIX}_notification_enqueue_failures",
            "Delivery tasks this process could not enqueue (the beat re-drive sends them)",
            value=dispatch.counters["enqueue_failed"],
        )
