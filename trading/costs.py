"""What a trade costs, and whether the expected edge pays for it: one implementation for the live decision
pipeline and for the backtest that evaluates a model (`models_registry.training.LiveSizer` calls it), so what was
evaluated is what trades.

Round-trip cost (fractions of notional), paid to enter a position and leave it again::

    round_trip = 2 x (taker fee + half-spread + slippage)

- taker fee: the instrument's, from Kraken's AssetPairs fee schedule at the base tier (``Instrument.taker_fee``),
  ``GALFRIDAY_DEFAULT_TAKER_FEE`` while it is not known;
- half-spread: (ask - bid) / (2 mid) of the last quote (the backtest, which has no book, uses 0 and charges the
  slippage estimate instead, as its fills do);
- slippage: ``GALFRIDAY_SLIPPAGE_BPS``, an estimate of how far a market order walks the book.

Entry rule: buying (a position that grows) needs the model's expected return over its horizon, from its
probabilities, above the round trip. Selling (a position that shrinks) never needs an edge: getting out is
always allowed.

No-trade band: a rebalance worth less than ``max(band x equity, multiple x the exchange minimum)`` is skipped
(``GALFRIDAY_NO_TRADE_BAND``, ``GALFRIDAY_NO_TRADE_MIN_MULTIPLE``), except a sale that closes the position, so
fees are not paid for small adjustments and no dust is left behind.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings

ZERO = Decimal(0)
BPS = Decimal("0.0001")


@dataclass(frozen=True)
class CostModel:
    taker_fee: Decimal
    half_spread: Decimal
    slippage: Decimal

    @property
    def round_trip(self) -> Decimal:
        return 2 * (self.taker_fee + self.half_spread + self.slippage)

    def describe(self) -> str:
        return (
            f"round-trip cost {self.round_trip:.4%} (fee {self.taker_fee:.4%}, half-spread {self.half_spread:.4%}, "
            f"slippage {self.slippage:.4%}, each way)"
        )

    @classmethod
    def for_instrument(
        cls, *, taker_fee: Decimal | None, bid: Decimal | None = None, ask: Decimal | None = None
    ) -> CostModel:
        """The cost of trading an instrument now: its fee (or the default), the last quote's half-spread."""
        fee = taker_fee if taker_fee is not None else Decimal(str(settings.GALFRIDAY_DEFAULT_TAKER_FEE))
        half_spread = ZERO
        if bid is not None and ask is not None and bid > 0 and ask >= bid:
            half_spread = (ask - bid) / (ask + bid)  # (ask - bid) / 2 / mid
        return cls(taker_fee=fee, half_spread=half_spread, slippage=slippage_estimate())


def slippage_estimate() -> Decimal:
    return Decimal(str(settings.GALFRIDAY_SLIPPAGE_BPS)) * BPS


@dataclass(frozen=True)
class NoTradeBand:
    fraction: Decimal  # of equity
    min_multiple: Decimal  # of the exchange's minimum order value

    @classmethod
    def from_settings(cls) -> NoTradeBand:
        return cls(
            fraction=Decimal(str(settings.GALFRIDAY_NO_TRADE_BAND)),
            min_multiple=Decimal(str(settings.GALFRIDAY_NO_TRADE_MIN_MULTIPLE)),
        )

    def threshold(self, *, equity: Decimal, price: Decimal, ordermin: Decimal, costmin: Decimal | None) -> Decimal:
        """The smallest rebalance, in the quote currency, worth its fees."""
        exchange_minimum = max(ordermin * price, costmin or ZERO)
        return max(self.fraction * equity, self.min_multiple * exchange_minimum)


@dataclass(frozen=True)
class TradeCheck:
    allowed: bool
    reason: str  # why not (empty when allowed)


def trade_check(
    *,
    current_qty: Decimal,
    target_qty: Decimal,
    price: Decimal,
    equity: Decimal,
    expected_return: float | None,
    cost: CostModel,
    band: NoTradeBand,
    ordermin: Decimal,
    costmin: Decimal | None,
    edge_required: bool = True,
) -> TradeCheck:
    """Whether moving from `current_qty` to `target_qty` (base asset, at `price`) is worth doing.
    `edge_required=False`: a fixed rule with no expected return (a baseline in an evaluation) skips the entry
    rule; the band still applies."""
    delta = target_qty - current_qty
    if delta == 0:
        return TradeCheck(False, "at target")
    if delta > 0 and edge_required:
        if expected_return is None:
            return TradeCheck(False, "the model gives no expected return, so no edge to weigh against the cost")
        edge = Decimal(repr(float(expected_return)))
        if edge <= cost.round_trip:
            return TradeCheck(False, f"expected edge {edge:.4%} does not beat the {cost.describe()}")
    closes_position = target_qty == 0 and current_qty > 0
    value = abs(delta) * price
    threshold = band.threshold(equity=equity, price=price, ordermin=ordermin, costmin=costmin)
    if not closes_position and value < threshold:
        return TradeCheck(
            False,
            f"rebalance of {value:.2f} is inside the no-trade band ({threshold:.2f}: {band.fraction:.2%} of equity, "
            f"at least {band.min_multiple}x the exchange minimum)",
        )
    return TradeCheck(True, "")
