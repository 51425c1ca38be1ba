"""What every process counts and times, exported to Prometheus from whichever process met it.

`/metrics` is served by the web process, but predictions, orders and execution reports happen in the Celery
workers and the ingest worker. With `PROMETHEUS_MULTIPROC_DIR` in every process's environment before it starts
(prometheus_client's multiprocess mode; `manage.py standalone` sets it), each process writes the samples below to
memory-mapped files in that directory and `/metrics` adds them up across processes (`galfriday_site.metrics`).
Without it (a process on its own, the tests) they stay in the process and `/metrics` shows the web's own.

- `ProcessCounters(component)`: a `collections.Counter` whose increments also go to
  `galfriday_events_total{component, name}`, so a module's `counters["sent"] += 1` is seen from every process
  without changing the code that counts (reading it still gives this process's own count).
- One histogram per latency target: closed bar → exchange acknowledgement (`BAR_TO_ACK`), execution report
  received → committed (`EXECUTION_REPORT_COMMIT`), one prediction (`PREDICTION`).
- Celery task outcomes per task (`TASK_OUTCOMES`), counted by `galfriday_site.celery`'s signal handlers.

Only counters and histograms live here: they add up across processes, and a dead process's counts stay counted.
"""

from __future__ import annotations

import os
import socket
from collections import Counter as _BaseCounter
from typing import Any

from prometheus_client import Counter, Histogram, values

PREFIX = "galfriday"
_HOST = socket.gethostname().replace("_", "-")


def process_identifier() -> str:
    """What names this process's files in the shared directory: host and pid, so that processes of several
    containers sharing one volume (each with its own pid 1) never write the same file."""
    return f"{_HOST}-{os.getpid()}"


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    values.ValueClass = values.MultiProcessValue(process_identifier=process_identifier)

EVENTS = Counter(
    f"{PREFIX}_events",
    "Events counted by the process that met them (trading, execution, prediction, experiments, ...), all processes",
    ["component", "name"],
)

# Seconds. The trading targets are well under a second (BENCHMARKS.md); the tail buckets show a degraded system.
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

BAR_TO_ACK = Histogram(
    f"{PREFIX}_bar_to_ack_seconds",
    "Bar end to the exchange's acknowledgement of the decision's order, per symbol (the bar closes 2 s after its end)",
    ["symbol"],
    buckets=LATENCY_BUCKETS,
)
EXECUTION_REPORT_COMMIT = Histogram(
    f"{PREFIX}_execution_report_commit_seconds",
    "An execution report's frame received by the ingest worker to its effect committed in the database",
    buckets=LATENCY_BUCKETS,
)
PREDICTION = Histogram(
    f"{PREFIX}_prediction_seconds",
    "One prediction by the prediction service (features in, probabilities out), every process",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5),
)
TASK_OUTCOMES = Counter(
    f"{PREFIX}_celery_tasks",
    "Celery tasks finished per task and outcome (success, failure, retry, revoked, rejected), every worker",
    ["task", "outcome"],
)


class ProcessCounters(_BaseCounter[str]):
    """`collections.Counter` that also exports every increase to `galfriday_events_total{component, name}`.

    `counters[name] += 1` reads then sets the item: the difference is what gets exported, so every way a Counter
    grows (`+=`, `update`, item assignment) is seen. Decreases and `clear()` (tests reset their counters) change
    only this process's view; the exported counter never goes down."""

    def __init__(self, component: str, *args: Any, **kwargs: Any) -> None:
        self.component = component
        super().__init__(*args, **kwargs)

    def __setitem__(self, key: str, value: int) -> None:
        delta = value - self.get(key, 0)
        super().__setitem__(key, value)
        if delta > 0:
            EVENTS.labels(self.component, key).inc(delta)

    def copy(self) -> ProcessCounters:
        """A snapshot with the same counts; making it exports nothing."""
        return restore_counters(self.component, dict(self))

    def __reduce__(self) -> tuple[Any, ...]:
        return restore_counters, (self.component, dict(self))


def restore_counters(component: str, counts: dict[str, int]) -> ProcessCounters:
    """`ProcessCounters` holding `counts` without exporting them again (copies, unpickling)."""
    counters = ProcessCounters(component)
    dict.update(counters, counts)
    return counters
