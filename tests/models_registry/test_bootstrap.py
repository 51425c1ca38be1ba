"""Bootstrap end to end against the simulator: backfill, train, register, promote through the gates; idempotent;
never overrides a failed gate."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from models_registry.bootstrap import bootstrap_model
from models_registry.models import ModelVersion, RegisteredModel, StageEvent
from tests.models_registry.factories import registry_settings  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("registry_settings")]


def test_bootstrap_trains_and_promotes_then_does_nothing(exchange_client) -> None:  # type: ignore[no-untyped-def]
    result = bootstrap_model(symbol="BTC/USD", client=exchange_client)

    assert result.status == "production", result.message
    version = ModelVersion.objects.get()
    assert version.stage == "production"
    assert version.model.name == "btc-usd-1m-direction"
    assert version.model.promotion_gates["production"]
    assert result.backfill is not None
    assert result.backfill["written"] > 600
    event = StageEvent.objects.get(to_stage="production")
    assert event.actor == "bootstrap"
    assert not event.gate_overridden
    assert all(g["passed"] for g in event.gate_report)

    again = bootstrap_model(symbol="BTC/USD", client=exchange_client)

    assert again.status == "exists"
    assert ModelVersion.objects.count() == 1


def test_a_model_failing_the_production_gates_goes_to_staging_with_the_reasons(exchange_client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.MODELS_REGISTRY_BOOTSTRAP_GATES = {"production": {"sharpe": {"min": 50.0}}}

    result = bootstrap_model(symbol="BTC/USD", client=exchange_client)

    assert result.status == "staging"
    assert result.failed_gates
    assert "sharpe" in result.failed_gates[0]
    assert "fails the production gates" in result.message
    version = ModelVersion.objects.get()
    assert version.stage == "staging"
    assert not StageEvent.objects.filter(to_stage="production").exists()
    assert not StageEvent.objects.filter(gate_overridden=True).exists()


def test_bootstrap_without_enough_history_explains_and_registers_nothing(exchange_client) -> None:  # type: ignore[no-untyped-def]
    out = StringIO()

    call_command("bootstrap_model", "--symbol=BTC/USD", "--no-backfill", stdout=out)

    result = json.loads(out.getvalue())
    assert result["status"] == "insufficient_history"
    assert "no 1-minute bars" in result["message"]
    assert not ModelVersion.objects.exists()
    assert not RegisteredModel.objects.exists()


def test_bootstrap_command_end_to_end(exchange_client) -> None:  # type: ignore[no-untyped-def]
    out = StringIO()

    call_command("bootstrap_model", "--symbol=BTC/USD", stdout=out)
    call_command("bootstrap_model", "--symbol=BTC/USD", stdout=out)

    assert ModelVersion.objects.get().stage == "production"
    assert '"status": "exists"' in out.getvalue()
