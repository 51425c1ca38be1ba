"""The predictor the trading pipeline calls, wired by settings so that `trading/` never imports the registry:

    GALFRIDAY_PREDICTOR = "models_registry.predictor.PipelinePredictor"

The pipeline loads the class named there (``django.utils.module_loading.import_string``), builds it with no
arguments and calls ``predict(symbol=, bar_time=, decision_id=, bars=)`` for each closed bar: features from the
stored bars, the serving version's probabilities, signal, confidence and expected return, or no signal with the
reason. `RegistryPredictor` is the part that asks the prediction service for one feature row. Each call is
recorded once per (decision id, version), so a replayed decision is safe.

Which model serves a symbol: ``MODELS_REGISTRY_SYMBOL_MODELS`` ({"BTC/USD": "..."}), else the default name
(``btc-usd-1m-direction``); which of its versions: ``MODELS_REGISTRY_PREDICTOR_SELECTOR`` (default
``production``; an alias such as ``champion`` works too). The experiments app can pass another selector per
call to route a decision to a challenger.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from core.errors import NotFoundError
from models_registry.features import REQUIRED_COLUMNS, WARMUP_BARS, compute_features
from models_registry.history import bars_frame, fill_gaps
from models_registry.models import ModelVersion, Stage
from models_registry.prediction import PredictionOutput, PredictionService, get_prediction_service
from models_registry.prediction import expected_return as expected_return  # re-exported (bench_bar_to_ack)
from models_registry.selectors import promotion_gate_report
from models_registry.training import default_model_name
from trading.predictor import BarWindow, read_bars
from trading.predictor import Prediction as TradingPrediction


class RegistryPredictor:
    def __init__(self, *, service: PredictionService | None = None, selector: str | None = None) -> None:
        self._service = service
        self.selector = selector or str(settings.MODELS_REGISTRY_PREDICTOR_SELECTOR)

    @property
    def service(self) -> PredictionService:
        return self._service or get_prediction_service()

    def predict_output(
        self,
        symbol: str,
        decision_id: str,
        features: Any,
        *,
        selector: str | None = None,
        bar_time: datetime | None = None,
        defer_record: bool = False,
    ) -> PredictionOutput:
        return self.service.predict_one(
            features,
            model_name=default_model_name(symbol),
            selector=selector or self.selector,
            decision_id=decision_id,
            symbol=symbol,
            bar_time=bar_time,
            defer_record=defer_record,
        )

    def predict(
        self, symbol: str, decision_id: str, features: Any, *, selector: str | None = None
    ) -> tuple[int, float, int]:
        output = self.predict_output(symbol, decision_id, features, selector=selector)
        return output.signal, output.confidence, output.version_id


def no_model_reason(symbol: str) -> str:
    """Why no model serves `symbol`: its model has no version, or the latest failed the production gates."""
    name = default_model_name(symbol)
    latest = ModelVersion.objects.select_related("model").filter(model__name=name).order_by("-version").first()
    if latest is None:
        return f"no model serves {symbol}: {name} has no trained version yet"
    report = promotion_gate_report(version=latest, target=Stage.PRODUCTION)
    failures = [r.detail for r in report.failures]
    if not failures:
        return (
            f"no model serves {symbol}: {name} v{latest.version} passes the gates but is not promoted ({latest.stage})"
        )
    shown = "; ".join(failures[:4]) + (f"; and {len(failures) - 4} more" if len(failures) > 4 else "")
    return f"no model serves {symbol}: {name} v{latest.version} failed {shown}"


class PipelinePredictor:
    """`trading.predictor.Predictor` served by the registry (set GALFRIDAY_PREDICTOR to this class):

    the bars up to the decision's bar are read from the time-series store, features computed by the one feature
    implementation (`models_registry.features`), and the symbol's serving version predicts; the prediction carries
    its class probabilities and the version's expected return for them (`expected_return`), which the pipeline
    weighs against the trading cost. While no version serves the symbol (none passed the production gates), or
    the history is shorter than the feature warm-up, there is no signal and the prediction says why
    (``no model serves BTC/USD: btc-usd-1m-direction v3 failed psr = 0.41, needs >= 0.95; ...``): the symbol is
    not traded.
    """

    # The bar fields the features use (models_registry.features: high, low, close, volume): reading only these
    # on the decision path halves the fields decoded per bar; the features are the same as from whole bars.
    bars_fields: tuple[str, ...] = REQUIRED_COLUMNS

    def __init__(self, *, registry: RegistryPredictor | None = None) -> None:
        self.registry = registry or RegistryPredictor()

    def bars_range(self, *, bar_time: datetime) -> tuple[datetime, datetime]:
        """The bars the features of `bar_time` need: the warm-up and the bar itself."""
        return bar_time - timedelta(minutes=WARMUP_BARS + 1), bar_time + timedelta(minutes=1)

    def predict(
        self, *, symbol: str, bar_time: datetime, decision_id: str, bars: BarWindow | None = None
    ) -> TradingPrediction:
        """`bars`: the bars the pipeline read for this decision (the sizing uses them too); read here when they
        do not cover `bars_range`."""

        start, end = self.bars_range(bar_time=bar_time)
        if bars is None or not bars.covers(symbol=symbol, start=start, end=end, fields=self.bars_fields):
            bars = read_bars(symbol=symbol, start=start, end=end, fields=self.bars_fields)
        frame, _ = fill_gaps(bars_frame(bars.between(start, end), columns=self.bars_fields))
        if len(frame) <= WARMUP_BARS or frame.index[-1] != bar_time:
            return _no_signal(f"{len(frame)} bars of {symbol} up to this one: the features need {WARMUP_BARS + 1}")
        row = compute_features(frame).iloc[-1]
        if row.isna().any():
            return _no_signal(f"features of {symbol} incomplete: {sorted(row[row.isna()].index)}")
        try:
            output = self.registry.predict_output(
                symbol, decision_id, row.to_dict(), bar_time=bar_time, defer_record=True
            )
        except NotFoundError:  # no such model yet, or no version in the selected stage
            return _no_signal(no_model_reason(symbol))
        return TradingPrediction(
            output.signal,
            output.confidence,
            f"{output.model_name} v{output.version}",
            probabilities=dict(output.probabilities),
            expected_return=output.expected_return,
            model_name=output.model_name,
            version=output.version,
            record=output.record,  # the pipeline records the prediction in the decision's transaction
        )


def _no_signal(reason: str) -> TradingPrediction:
    return TradingPrediction(0, 0.0, "none", reason=reason)
