"""Test doubles. `RecordingGateway` stands in for the execution gateway where a test is about what the risk
layer or the pipeline hands over, and when (after commit); execution itself is tested against the simulator in
test_execution*.py."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

from trading.predictor import BarWindow, Prediction, closes_window, momentum_signals, recent_closes


class RecordingGateway:
    calls: ClassVar[list[tuple[str, int]]] = []

    def submit_order(self, *, order_id: int) -> None:
        self.calls.append(("submit", order_id))

    def cancel_order(self, *, order_id: int) -> None:
        self.calls.append(("cancel", order_id))


class MomentumTestModel:
    """A stand-in for a served model version in the pipeline's own tests (the registry's predictor has its own
    tests against real versions): the momentum rule on the stored closes (`trading.predictor.momentum_signals`),
    reported as the served version "test-momentum v1" with class probabilities and, as its expected return, the
    move over the lookback (what a trend-following model would expect to continue)."""

    lookback = 15
    dead_zone = 0.008
    bars_fields: tuple[str, ...] = ("close",)

    def bars_range(self, *, bar_time: datetime) -> tuple[datetime, datetime]:
        return closes_window(until=bar_time, count=self.lookback + 1)

    def predict(
        self, *, symbol: str, bar_time: datetime, decision_id: str, bars: BarWindow | None = None
    ) -> Prediction:
        window = recent_closes(symbol=symbol, until=bar_time, count=self.lookback + 1, bars=bars)
        closes = [float(c.close) for c in window]
        if len(closes) < self.lookback + 1:
            return Prediction(0, 0.0, "none", reason="not enough bars")
        signals, confidence = momentum_signals(closes, lookback=self.lookback, dead_zone=self.dead_zone)
        move = closes[-1] / closes[0] - 1.0
        signal, conf = signals[-1], confidence[-1]
        strong, weak = 0.5 + 0.4 * conf, 0.1
        probabilities = {-1: 0.3, 0: 0.4, 1: 0.3}
        if signal:
            probabilities = {signal: strong, -signal: weak, 0: 1.0 - strong - weak}
        return Prediction(
            signal,
            conf,
            "test-momentum v1",
            probabilities=probabilities,
            expected_return=move,
            model_name="test-momentum",
            version=1,
        )


class ScriptedModel:
    """A served model whose next prediction the test sets (`ScriptedModel.prediction = Prediction(...)`)."""

    prediction: ClassVar[Prediction] = Prediction(0, 0.0, "none", reason="nothing scripted")

    def predict(self, *, symbol: str, bar_time: datetime, decision_id: str) -> Prediction:
        return self.prediction
