"""The wiring on a real Celery worker (celery's in-process test worker over Redis, listening only to the
`lifecycle` queue): an operator's trigger enqueues the run's task after commit, the worker trains the challenger
and the experiments app starts its shadow test, with no call from the test in between."""

from __future__ import annotations

from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.utils import timezone

from experiments.models import Experiment, Status
from galfriday_site.celery import app
from models_registry.retraining.models import RetrainingRun
from models_registry.retraining.services import retraining_trigger
from models_registry.retraining.tasks import retraining_run_task
from tests.models_registry.factories import registry_settings  # noqa: F401
from tests.models_registry.retraining.support import fast_retraining_settings, stored_market, trained_champion
from tests.waiting import wait_for

pytestmark = [
    pytest.mark.usefixtures("registry_settings"),
    pytest.mark.django_db(transaction=True),
    pytest.mark.services("postgres", "redis", "influxdb"),
]


def test_triggered_run_is_trained_by_the_lifecycle_worker_and_shadow_tested(settings: Any) -> None:
    fast_retraining_settings(settings)
    symbol, bars = stored_market(end=timezone.now().replace(second=0, microsecond=0))
    champion = trained_champion(symbol, bars)
    assert app.amqp.router.route({}, retraining_run_task.name)["queue"].name == "lifecycle"
    app.control.purge()  # tasks other tests' triggers left on this broker (their run ids mean nothing here)
    with start_worker(app, pool="solo", perform_ping_check=False, queues=["lifecycle"], shutdown_timeout=30):
        started = retraining_trigger(
            model_name=champion.model.name, kind="operator", reason="worker wiring", actor="test"
        )
        assert started.run is not None
        run_id = started.run.pk

        def handed_over() -> RetrainingRun | None:
            run = RetrainingRun.objects.filter(pk=run_id).exclude(status__in=["queued", "training"]).first()
            return run if run is not None and (run.status != "shadow" or run.experiment_id is not None) else None

        run = wait_for(handed_over, timeout=240, what="the worker to train the run and hand it to the shadow test")
    assert run.status == RetrainingRun.Status.SHADOW, run.outcome
    assert run.challenger is not None
    experiment = Experiment.objects.get(pk=run.experiment_id)
    assert experiment.status == Status.RUNNING
