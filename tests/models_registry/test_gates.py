"""Promotion gates: on by default and demanding an edge net of costs; a model's own gates can only tighten the
settings; strict and inclusive bounds; the report kept on the version; every version of a model counts as a trial
of the deflated Sharpe ratio."""

from __future__ import annotations

import math

import numpy as np
import pytest

from galfriday_site.settings import DEFAULT_PROMOTION_GATES
from models_registry.selectors import gate_config, gate_results, promotion_gate_report
from models_registry.services import model_version_gates_record
from models_registry.training import TrainingConfig, evaluate_and_fit
from tests.models_registry.factories import make_model, make_version, registry_settings  # noqa: F401
from tests.models_registry.synthetic import make_bars

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("registry_settings")]

EARNED = {
    "net_pnl": 0.04,
    "excess_net_pnl_vs_hold": 0.05,
    "excess_net_pnl_vs_momentum": 0.01,
    "psr": 0.999,
    "dsr": 0.98,
    "log_loss_skill": 0.2,
    "brier_skill": 0.2,
    "ece": 0.04,
    "n_oos_trades": 300,
    "max_drawdown": 0.05,
}


def test_the_default_gates_demand_an_edge_net_of_costs() -> None:
    production = DEFAULT_PROMOTION_GATES["production"]
    assert production["psr"] == {"min": 0.95}
    assert production["dsr"] == {"min": 0.95}
    for baseline in ("net_pnl", "excess_net_pnl_vs_hold", "excess_net_pnl_vs_momentum"):
        assert production[baseline] == {"gt": 0.0}
    assert production["log_loss_skill"] == {"gt": 0.0}
    assert production["brier_skill"] == {"gt": 0.0}
    assert "max" in production["ece"]
    assert production["n_oos_trades"]["min"] >= 30


@pytest.mark.parametrize(
    ("metric", "value"),
    [
        ("net_pnl", 0.0),  # not above not trading
        ("excess_net_pnl_vs_hold", -0.001),
        ("excess_net_pnl_vs_momentum", 0.0),
        ("psr", 0.94),
        ("dsr", 0.5),
        ("log_loss_skill", -0.01),  # log loss above the class prior's
        ("brier_skill", 0.0),
        ("ece", 0.3),  # overconfident
        ("n_oos_trades", 29),
    ],
)
def test_each_default_gate_refuses_what_it_should(metric: str, value: float) -> None:
    gates = DEFAULT_PROMOTION_GATES["production"]
    assert all(r.passed for r in gate_results(EARNED, gates))
    failed = [r for r in gate_results({**EARNED, metric: value}, gates) if not r.passed]
    assert [r.name.split(":", 1)[1] for r in failed] == [metric]
    assert failed[0].detail.startswith(f"{metric} = ")


def test_a_missing_or_non_finite_metric_fails_as_not_recorded() -> None:
    metrics = {k: v for k, v in EARNED.items() if k != "psr"} | {"dsr": math.nan}
    failed = {r.name for r in gate_results(metrics, DEFAULT_PROMOTION_GATES["production"]) if not r.passed}
    assert failed == {"metric:psr", "metric:dsr"}


def test_a_models_own_gates_can_tighten_but_never_loosen_the_settings(settings) -> None:  # type: ignore[no-untyped-def]
    settings.MODELS_REGISTRY_PROMOTION_GATES = {"production": {"psr": {"min": 0.95}, "ece": {"max": 0.1}}}
    loose = make_model(gates={"production": {"psr": {"min": 0.5}, "ece": {"max": 0.9}}})
    tight = make_model(gates={"production": {"psr": {"min": 0.99}, "ece": {"max": 0.02}, "sharpe": {"gt": 3}}})
    assert gate_config(model=loose, target="production") == {"psr": {"min": 0.95}, "ece": {"max": 0.1}}
    assert gate_config(model=tight, target="production") == {
        "psr": {"min": 0.99},
        "ece": {"max": 0.02},
        "sharpe": {"gt": 3.0},
    }


def test_strict_bounds_refuse_the_bound_itself(settings) -> None:  # type: ignore[no-untyped-def]
    results = gate_results({"a": 0.0, "b": 1.0}, {"a": {"gt": 0.0}, "b": {"lt": 1.0, "min": 1.0}})
    assert {r.name: r.passed for r in results} == {"gt:a": False, "min:b": True, "lt:b": False}


def test_the_gate_report_is_kept_on_the_version(settings) -> None:  # type: ignore[no-untyped-def]
    settings.MODELS_REGISTRY_PROMOTION_GATES = DEFAULT_PROMOTION_GATES
    model = make_model(gates={})
    version = make_version(model, metrics={**EARNED, "psr": 0.41})
    report = model_version_gates_record(version=version, actor="test")
    version.refresh_from_db()
    assert report.passed is False
    assert version.gate_report["passed"] is False
    assert [r["detail"] for r in version.gate_report["results"] if not r["passed"]] == ["psr = 0.41, needs >= 0.95"]
    assert promotion_gate_report(version=version, target="production").as_json() == version.gate_report["results"]


def test_every_version_of_a_model_counts_as_a_trial_of_the_deflated_sharpe_ratio() -> None:
    """DSR deflates for the number of trials: more versions tried (and a spread of their Sharpe ratios) need a
    better Sharpe ratio for the same DSR, so retraining until one passes is penalised."""
    bars = make_bars(2000, seed=5, book=False)
    config = TrainingConfig(model="logreg", horizon=15, n_splits=3, taker_fee=0.0, slippage_bps=0.0)
    once = evaluate_and_fit(bars, config, n_trials=1)
    assert once.metrics["n_trials"] == 1
    assert once.metrics["dsr"] == pytest.approx(once.metrics["psr"])
    spread = list(np.linspace(-0.05, 0.05, 19))
    many = evaluate_and_fit(bars, config, prior_trial_sharpes=spread, n_trials=40)
    assert many.metrics["n_trials"] == 40
    assert many.metrics["dsr"] < once.metrics["dsr"]
