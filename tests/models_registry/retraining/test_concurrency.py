"""Single-flight under concurrency on PostgreSQL: two triggers of one model at the same instant, each in its own
thread and connection (row locks and the partial unique constraint are real only there), start exactly one run;
the other trigger is recorded as joined to it."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection, connections

from galfriday_site.celery import app
from models_registry.retraining.models import RetrainingRun, RetrainingTrigger
from models_registry.retraining.services import TriggerResult, retraining_trigger
from models_registry.services import model_version_promote
from tests.models_registry.factories import make_model, make_version, registry_settings  # noqa: F401

pytestmark = [
    pytest.mark.usefixtures("registry_settings"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.services("postgres", "redis"),
]


def _race(model_name: str, kinds: tuple[str, str]) -> list[TriggerResult | BaseException]:
    barrier = threading.Barrier(len(kinds))
    results: list[TriggerResult | BaseException] = []
    lock = threading.Lock()

    def trigger(kind: str) -> None:
        try:
            barrier.wait(timeout=10)
            result: TriggerResult | BaseException = retraining_trigger(
                model_name=model_name, kind=kind, reason=f"{kind} at the same instant", actor=f"test:{kind}"
            )
        except BaseException as exc:
            result = exc
        finally:
            connections.close_all()
        with lock:
            results.append(result)

    threads = [threading.Thread(target=trigger, args=(kind,)) for kind in kinds]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return results


@pytest.mark.parametrize("kinds", [("operator", "operator"), ("drift", "schedule")])
def test_two_concurrent_triggers_start_one_run_and_the_other_joins(kinds: tuple[str, str], settings: Any) -> None:
    assert connection.vendor == "postgresql"
    settings.MODELS_REGISTRY_RETRAINING_COOLDOWN_HOURS = 0.0
    model = make_model()
    version = make_version(model)
    model_version_promote(model_name=model.name, version=version.version, reason="champion", actor="test")
    results = _race(model.name, kinds)
    assert len(results) == 2
    assert all(isinstance(r, TriggerResult) for r in results), results
    outcomes = sorted((r.started, r.trigger.joined) for r in results if isinstance(r, TriggerResult))
    assert outcomes == [(False, True), (True, False)]
    runs = list(RetrainingRun.objects.filter(model=model))
    assert len(runs) == 1
    assert runs[0].status == RetrainingRun.Status.QUEUED
    assert RetrainingTrigger.objects.filter(model=model, run=runs[0]).count() == 2
    app.control.purge()  # the run's task, enqueued after the commit: no worker here
