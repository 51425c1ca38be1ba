"""The fault campaign's predictor (`GALFRIDAY_PREDICTOR=bench.faults.predictor.Alternating`): deterministic, no
model, so every decision of the campaign is an order. Bars alternate by their index: an even bar buys toward a small
target (the sizing fraction of equity), an odd bar sells the position back to flat. With the no-trade band off and an
expected return above the round-trip cost (the entry rule), each bar trades: the books move on every bar."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from trading.predictor import Prediction

# Above the round trip (2 x (taker fee + half spread + slippage)), so the entry rule lets the buys through.
EXPECTED_RETURN = 0.05
VERSION = "fault-campaign-alternating-v1"


class Alternating:
    version = VERSION

    def predict(self, *, symbol: str, bar_time: datetime, decision_id: str) -> Any:
        index = int(bar_time.timestamp())
        # The decision bars' length is unknown here; any length of whole seconds alternates on its start's parity
        # once divided by it, and the campaign runs 5-second bars: even fifths buy, odd ones sell.
        signal = 1 if (index // 5) % 2 == 0 else -1
        return Prediction(signal, 1.0 if signal > 0 else 0.0, VERSION, expected_return=EXPECTED_RETURN)
