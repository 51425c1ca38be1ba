"""Celery in `/metrics`, asked of the broker at scrape time: messages waiting per queue, and the workers that answer
a ping within GALFRIDAY_METRICS_WORKER_PING_TIMEOUT seconds. Task outcomes are counted by the workers themselves
(`core.metrics.TASK_OUTCOMES`, read with every process's counters)."""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from galfriday_site.celery import app

PREFIX = "galfriday"


class QueueDepthCollector(Collector):
    """`galfriday_celery_queue_depth{queue}`: messages waiting in each of the project's queues (on Redis, every
    priority's list; a queue nobody has used yet counts 0)."""

    def collect(self) -> Iterator[Metric]:
        depth = GaugeMetricFamily(f"{PREFIX}_celery_queue_depth", "Messages waiting per Celery queue", labels=["queue"])
        timeout = float(settings.HEALTH_CHECK_TIMEOUT)
        with app.connection_for_read() as connection:
            connection.ensure_connection(max_retries=1, timeout=timeout)
            channel = connection.default_channel
            for queue in settings.GALFRIDAY_CELERY_QUEUES:
                # Declaring is idempotent (the worker declares the same queues) and answers the message count.
                depth.add_metric([queue], float(channel.queue_declare(queue=queue).message_count))
        yield depth


class WorkersCollector(Collector):
    """`galfriday_celery_workers_online` and `galfriday_celery_worker_up{worker}`: the workers that answered a
    broadcast ping. The scrape waits the whole timeout (replies are gathered until it passes)."""

    def collect(self) -> Iterator[Metric]:
        replies = app.control.ping(timeout=float(settings.GALFRIDAY_METRICS_WORKER_PING_TIMEOUT)) or []
        workers = sorted({name for reply in replies for name in reply})
        yield GaugeMetricFamily(
            f"{PREFIX}_celery_workers_online", "Celery workers that answered a ping", value=float(len(workers))
        )
        up = GaugeMetricFamily(
            f"{PREFIX}_celery_worker_up", "1 for each worker that answered a ping", labels=["worker"]
        )
        for worker in workers:
            up.add_metric([worker], 1.0)
        yield up
