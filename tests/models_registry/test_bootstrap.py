"""Bootstrap end to end against the simulator: 14 days of history rebuilt from REST trades, train, register, and
promote only through the gates. On the learnable scenario a model earns production; on a random walk the gates
refuse, nothing serves, and the decision path says why. Idempotent; never overrides a failed gate."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from galfriday_site.settings import DEFAULT_PROMOTION_GATES
from models_registry.bootstrap import bootstrap_model
from models_registry.models import HistoryBackfill, ModelVersion, RegisteredModel, StageEvent
from models_registry.predictor import PipelinePredictor
from tests.models_registry.factories import registry_settings  # noqa: F401

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("registry_settings", "default_gates")]

EDGE_GATES = ("psr", "dsr", "net_pnl", "excess_net_pnl_vs_hold", "excess_net_pnl_vs_momentum", "log_loss_skill")


@pytest.fixture
def default_gates(settings) -> None:  # type: ignore[no-untyped-def]
    """The gates every model faces by default (the unit tests of the registry run without them)."""
    settings.MODELS_REGISTRY_PROMOTION_GATES = DEFAULT_PROMOTION_GATES


def test_on_the_learnable_scenario_a_model_is_promoted_on_merit(trend_client) -> None:  # type: ignore[no-untyped-def]
    result = bootstrap_model(symbol="BTC/USD", client=trend_client)

    assert result.status == "production", result.message
    version = ModelVersion.objects.get()
    assert version.stage == "production"
    assert version.model.name == "btc-usd-1m-direction"
    assert version.model.promotion_gates == {}  # the same gates as any model
    assert result.backfill is not None
    assert result.backfill["trades"]["written"] >= 14 * 1440 - 1  # two weeks of bars from the exchange's trades
    assert version.metrics["bars_stored"] >= 14 * 1440 - 1
    report = version.gate_report
    assert report["passed"] is True
    names = {r["name"].split(":", 1)[1] for r in report["results"]}
    assert set(EDGE_GATES) <= names
    assert version.metrics["psr"] >= 0.95
    assert version.metrics["dsr"] >= 0.95
    assert version.metrics["excess_net_pnl_vs_hold"] > 0
    assert version.metrics["excess_net_pnl_vs_momentum"] > 0
    assert version.metrics["n_oos_trades"] >= 30
    event = StageEvent.objects.get(to_stage="production")
    assert event.actor == "bootstrap"
    assert not event.gate_overridden
    assert event.gate_report
    assert all(g["passed"] for g in event.gate_report)

    again = bootstrap_model(symbol="BTC/USD", client=trend_client)

    assert again.status == "exists"
    assert ModelVersion.objects.count() == 1


def test_on_a_random_walk_the_gates_refuse_and_the_symbol_is_not_traded(random_walk_client, admin_client) -> None:  # type: ignore[no-untyped-def]
    result = bootstrap_model(symbol="BTC/USD", client=random_walk_client)

    assert result.status == "staging", result.message
    assert "fails the production gates" in result.message
    version = ModelVersion.objects.get()
    assert version.stage == "staging"
    assert version.gate_report["passed"] is False
    failed = {r["name"] for r in version.gate_report["results"] if not r["passed"]}
    assert failed & {"gt:net_pnl", "metric:psr", "min:psr", "metric:dsr", "min:dsr"}
    assert not StageEvent.objects.filter(to_stage="production").exists()

    bars = HistoryBackfill.objects.filter(symbol="BTC/USD").first()
    assert bars is not None
    latest = version.data_end.replace(second=0, microsecond=0)
    from datetime import timedelta

    prediction = PipelinePredictor().predict(
        symbol="BTC/USD", bar_time=latest - timedelta(minutes=1), decision_id="rw-1"
    )
    assert prediction.signal == 0
    assert prediction.reason.startswith("no model serves BTC/USD: btc-usd-1m-direction v1 failed ")
    # the admin says why too
    page = admin_client.get(f"/admin/models_registry/modelversion/{version.pk}/change/")
    assert page.status_code == 200
    assert b"may not serve production" in page.content
    assert b"needs" in page.content
    listing = admin_client.get("/admin/models_registry/modelversion/")
    assert b"failed (" in listing.content


def test_a_model_failing_tighter_bootstrap_gates_goes_to_staging_with_the_reasons(trend_client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.MODELS_REGISTRY_BOOTSTRAP_GATES = {"production": {"sharpe": {"min": 1e9}}}

    result = bootstrap_model(symbol="BTC/USD", client=trend_client)

    assert result.status == "staging"
    assert result.failed_gates
    assert any("sharpe" in failure for failure in result.failed_gates)
    version = ModelVersion.objects.get()
    assert version.stage == "staging"
    assert not StageEvent.objects.filter(to_stage="production").exists()
    assert not StageEvent.objects.filter(gate_overridden=True).exists()


def test_bootstrap_gates_cannot_loosen_the_default_gates(random_walk_client, settings) -> None:  # type: ignore[no-untyped-def]
    settings.MODELS_REGISTRY_BOOTSTRAP_GATES = {"production": {"psr": {"min": 0.0}, "net_pnl": {"gt": -1.0}}}

    result = bootstrap_model(symbol="BTC/USD", client=random_walk_client)

    assert result.status == "staging"
    assert ModelVersion.objects.get().stage == "staging"


def test_bootstrap_without_enough_history_explains_and_registers_nothing(exchange_client) -> None:  # type: ignore[no-untyped-def]
    out = StringIO()

    call_command("bootstrap_model", "--symbol=BTC/USD", "--no-backfill", stdout=out)

    result = json.loads(out.getvalue())
    assert result["status"] == "insufficient_history"
    assert "no 1-minute bars" in result["message"]
    assert not ModelVersion.objects.exists()
    assert not RegisteredModel.objects.exists()


def test_bootstrap_command_end_to_end(trend_client) -> None:  # type: ignore[no-untyped-def]
    out = StringIO()

    call_command("bootstrap_model", "--symbol=BTC/USD", stdout=out)
    call_command("bootstrap_model", "--symbol=BTC/USD", stdout=out)

    assert ModelVersion.objects.get().stage == "production"
    assert '"status": "exists"' in out.getvalue()
