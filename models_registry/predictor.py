"""The predictor the trading pipeline calls, wired by settings so that `trading/` never imports the registry:

    GALFRIDAY_PREDICTOR = "models_registry.predictor.RegistryPredictor"

The pipeline loads the class named there (``django.utils.module_loading.import_string``), builds it with no
arguments and calls ``predict(symbol, decision_id, features)`` for each decision, where `features` maps the
feature names of ``models_registry.features.FEATURE_NAMES`` to floats (or is a ``FeatureRow``). It returns
``(signal, confidence, version_id)``: signal -1 (sell), 0 (no trade) or +1 (buy); confidence in [0, 1] (the
largest class probability); version_id the primary key of the ``ModelVersion`` that decided, to store with the
decision. Each call is recorded once per (decision id, version), so a replayed decision is safe.

Which model serves a symbol: ``MODELS_REGISTRY_SYMBOL_MODELS`` ({"BTC/USD": "..."}), else the default name
(``btc-usd-1m-direction``); which of its versions: ``MODELS_REGISTRY_PREDICTOR_SELECTOR`` (default
``production``; an alias such as ``champion`` works too). The experiments app can pass another selector per
call to route a decision to a challenger.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings

from galfriday_site.errors import NotFoundError
from models_registry.history import BAR_COLUMNS
from models_registry.prediction import PredictionService, get_prediction_service
from models_registry.training import default_model_name
from trading.predictor import BarWindow
from trading.predictor import Prediction as TradingPrediction


class RegistryPredictor:
    def __init__(self, *, service: PredictionService | None = None, selector: str | None = None) -> None:
        self._service = service
        self.selector = selector or str(getattr(settings, "MODELS_REGISTRY_PREDICTOR_SELECTOR", "production"))

    @property
    def service(self) -> PredictionService:
        return self._service or get_prediction_service()

    def predict(
        self, symbol: str, decision_id: str, features: Any, *, selector: str | None = None
    ) -> tuple[int, float, int]:
        output = self.service.predict_one(
            features,
            model_name=default_model_name(symbol),
            selector=selector or self.selector,
            decision_id=decision_id,
            symbol=symbol,
        )
        return output.signal, output.confidence, output.version_id


class PipelinePredictor:
    """`trading.predictor.Predictor` served by the registry (set GALFRIDAY_PREDICTOR to this class):

    the bars up to the decision's bar are read from the time-series store, features computed by the one feature
    implementation (`models_registry.features`), and the symbol's serving version predicts. While no version
    serves the symbol (before the first promotion), or the history is shorter than the feature warm-up, the
    clearly named baseline (`trading.predictor.MomentumBaseline`) decides, and its name is the decision's model
    version — so the decision record always says what decided.
    """

    bars_fields: tuple[str, ...] = BAR_COLUMNS  # what `load_bars` / `bars_frame` read of each bar

    def __init__(self, *, registry: RegistryPredictor | None = None) -> None:
        from trading.predictor import MomentumBaseline

        self.registry = registry or RegistryPredictor()
        self.fallback = MomentumBaseline()

    def bars_range(self, *, bar_time: datetime) -> tuple[datetime, datetime]:
        """The bars the features of `bar_time` need: the warm-up and the bar itself."""
        from models_registry.features import WARMUP_BARS

        return bar_time - timedelta(minutes=WARMUP_BARS + 1), bar_time + timedelta(minutes=1)

    def predict(
        self, *, symbol: str, bar_time: datetime, decision_id: str, bars: BarWindow | None = None
    ) -> TradingPrediction:
        """`bars`: the bars the pipeline read for this decision (the sizing uses them too); read here when they
        do not cover `bars_range`."""
        from models_registry.features import WARMUP_BARS, compute_features
        from models_registry.history import bars_frame, fill_gaps, load_bars

        start, end = self.bars_range(bar_time=bar_time)
        if bars is not None and bars.covers(symbol=symbol, start=start, end=end, fields=self.bars_fields):
            frame, _ = fill_gaps(bars_frame(bars.between(start, end)))  # exactly what load_bars builds
        else:
            frame = load_bars(symbol=symbol, start=start, end=end).bars
        if len(frame) <= WARMUP_BARS or frame.index[-1] != bar_time:
            return self.fallback.predict(symbol=symbol, bar_time=bar_time, decision_id=decision_id, bars=bars)
        row = compute_features(frame).iloc[-1]
        if row.isna().any():
            return self.fallback.predict(symbol=symbol, bar_time=bar_time, decision_id=decision_id, bars=bars)
        try:
            signal, confidence, version_id = self.registry.predict(symbol, decision_id, row.to_dict())
        except NotFoundError:  # no such model yet, or no version in the selected stage
            return self.fallback.predict(symbol=symbol, bar_time=bar_time, decision_id=decision_id, bars=bars)
        return TradingPrediction(signal, confidence, f"model-version-{version_id}")
