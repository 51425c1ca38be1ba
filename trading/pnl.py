"""Average-cost position accounting, PnL and drawdown: pure Decimal arithmetic, no Django.

A position is a signed quantity (long > 0, short < 0) with the average entry price of the open quantity.
- A fill in the direction of the position (or from flat) re-averages the entry price.
- A fill against it realises (exit - entry) × closed quantity (× -1 for shorts); the average stays.
- A fill larger than the position closes it and opens the rest on the other side at the fill price (a flip).
Realised PnL is gross; fees (in quote currency) are tracked beside it and `net = realised - fees`.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_EVEN, Decimal

QTY_PLACES = 10
PRICE_PLACES = 12
MONEY_PLACES = 12
ZERO = Decimal(0)

_PRICE_Q = Decimal(1).scaleb(-PRICE_PLACES)
_MONEY_Q = Decimal(1).scaleb(-MONEY_PLACES)


def q_price(value: Decimal) -> Decimal:
    return value.quantize(_PRICE_Q, rounding=ROUND_HALF_EVEN)


def q_money(value: Decimal) -> Decimal:
    return value.quantize(_MONEY_Q, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True, slots=True)
class PositionState:
    quantity: Decimal = ZERO
    avg_price: Decimal = ZERO
    realised_pnl: Decimal = ZERO
    fees: Decimal = ZERO


@dataclass(frozen=True, slots=True)
class FillOutcome:
    state: PositionState
    realised: Decimal  # realised by this fill (gross of fees)


def signed_qty(side: str, qty: Decimal) -> Decimal:
    if side == "buy":
        return qty
    if side == "sell":
        return -qty
    raise ValueError(f"side must be buy or sell, not {side!r}")


def apply_fill(state: PositionState, *, side: str, qty: Decimal, price: Decimal, fee: Decimal = ZERO) -> FillOutcome:
    if qty <= 0 or price <= 0:
        raise ValueError("a fill needs a positive quantity and price")
    delta = signed_qty(side, qty)
    current = state.quantity
    new_qty = current + delta
    fees = state.fees + fee
    if current == 0 or (current > 0) == (delta > 0):
        # Opening or adding: weighted average of the open quantity.
        avg = q_price((abs(current) * state.avg_price + qty * price) / abs(new_qty))
        return FillOutcome(PositionState(new_qty, avg, state.realised_pnl, fees), ZERO)
    closed = min(qty, abs(current))
    direction = 1 if current > 0 else -1
    realised = q_money(closed * (price - state.avg_price) * direction)
    if new_qty == 0:
        avg = ZERO
    elif (new_qty > 0) == (current > 0):
        avg = state.avg_price  # partial close: the entry of what is left does not change
    else:
        avg = q_price(price)  # flip: the remainder opens at this fill's price
    return FillOutcome(PositionState(new_qty, avg, state.realised_pnl + realised, fees), realised)


def unrealised_pnl(*, quantity: Decimal, avg_price: Decimal, mark: Decimal) -> Decimal:
    return q_money(quantity * (mark - avg_price))


def drawdown(*, high_water_mark: Decimal, equity: Decimal) -> Decimal:
    """Fraction (0..1+) of the high-water mark lost; 0 when there is no positive high-water mark yet."""
    if high_water_mark <= 0 or equity >= high_water_mark:
        return ZERO
    return ((high_water_mark - equity) / high_water_mark).quantize(Decimal("1e-8"), rounding=ROUND_HALF_EVEN)
