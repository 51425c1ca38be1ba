"""Every process's counters and histograms (`core.metrics`) in `/metrics`.

With PROMETHEUS_MULTIPROC_DIR set (prometheus_client's multiprocess mode, as under `manage.py standalone`), each
process writes its samples to files in that directory and they are added up here: a counter a Celery worker
incremented shows although the web process never touched it, and a dead process's counts stay counted. Without
it, this process's own registry is read (its counters only, plus its process and garbage-collector figures).
"""

from __future__ import annotations

from collections.abc import Iterator

from django.conf import settings
from prometheus_client import REGISTRY
from prometheus_client.core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector


def multiprocess_dir() -> str:
    return str(settings.PROMETHEUS_MULTIPROC_DIR or "")


class ProcessesCollector(Collector):
    def collect(self) -> Iterator[Metric]:
        path = multiprocess_dir()
        if path:
            yield from MultiProcessCollector(None, path=path).collect()
        else:
            yield from REGISTRY.collect()
