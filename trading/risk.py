"""Pre-trade risk checks: pure, fast, Decimal-only, over an explicit snapshot. No Django, no I/O.

`check_order(intent, snapshot)` runs every check and returns ALL failures, each with a stable code (`RiskCode`)
and a human reason, so a rejected order says everything that was wrong with it at once. The snapshot is loaded
(under row locks, in the same transaction that marks the order submitted) by
`trading.submission.order_submit_checked`; backtests build snapshots themselves.

Semantics:
- HALTED refuses every order. REDUCING (and an exchange `reduce_only` status) admits only orders that shrink the
  position without flipping it, counting the open orders that already work in the same direction.
- A breached daily loss limit or maximum drawdown refuses every order that does not reduce the position (the
  continuous monitor halts trading on the same breach).
- Notional = quantity × reference price: the limit price, or the mid for a market order.
- Position and gross-exposure limits apply only to orders that grow the position (worst case: every open order of
  the same direction fills); an order that reduces exposure is never refused by them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Any

from trading.pnl import drawdown

ZERO = Decimal(0)
ONE = Decimal(1)
# Reserved on top of a buy's notional so its fee cannot overdraw the quote balance (Kraken's highest spot taker fee).
FEE_RESERVE = Decimal("0.004")
ORDER_RATE_WINDOW = timedelta(seconds=60)


class RiskCode(StrEnum):
    TRADING_HALTED = "trading_halted"
    REDUCE_ONLY = "reduce_only"
    EXCHANGE_MAINTENANCE = "exchange_maintenance"
    EXCHANGE_CANCEL_ONLY = "exchange_cancel_only"
    EXCHANGE_POST_ONLY = "exchange_post_only"
    EXCHANGE_LIMIT_ONLY = "exchange_limit_only"
    EXCHANGE_REDUCE_ONLY = "exchange_reduce_only"
    EXCHANGE_UNAVAILABLE = "exchange_unavailable"
    BELOW_ORDERMIN = "below_ordermin"
    QTY_OFF_INCREMENT = "qty_off_increment"
    PRICE_OFF_TICK = "price_off_tick"
    BELOW_COSTMIN = "below_costmin"
    MAX_ORDER_NOTIONAL = "max_order_notional"
    MAX_POSITION = "max_position"
    MAX_GROSS_EXPOSURE = "max_gross_exposure"
    PRICE_BAND = "price_band"
    ORDER_RATE = "order_rate"
    INSUFFICIENT_BALANCE = "insufficient_balance"
    NO_MARKET_DATA = "no_market_data"
    STALE_MARKET_DATA = "stale_market_data"
    DAILY_LOSS_LIMIT = "daily_loss_limit"
    MAX_DRAWDOWN = "max_drawdown"


@dataclass(frozen=True, slots=True)
class RiskFailure:
    code: RiskCode
    reason: str

    def to_json(self) -> dict[str, str]:
        return {"code": self.code.value, "reason": self.reason}


@dataclass(frozen=True, slots=True)
class RiskResult:
    failures: tuple[RiskFailure, ...]

    @property
    def ok(self) -> bool:
        return not self.failures

    @property
    def codes(self) -> list[str]:
        return [f.code.value for f in self.failures]

    def to_json(self) -> list[dict[str, str]]:
        return [f.to_json() for f in self.failures]


@dataclass(frozen=True, slots=True)
class InstrumentRules:
    symbol: str
    base: str
    quote: str
    tick_size: Decimal
    ordermin: Decimal
    costmin: Decimal | None = None
    qty_increment: Decimal | None = None
    status: str = "online"


@dataclass(frozen=True, slots=True)
class Limits:
    max_order_notional: Decimal
    max_position_notional: Decimal
    max_gross_exposure: Decimal
    price_band: Decimal
    max_orders_per_minute: int
    max_data_age_seconds: int
    daily_loss_limit: Decimal
    max_drawdown: Decimal

    def to_json(self) -> dict[str, str]:
        return {name: str(getattr(self, name)) for name in self.__slots__}  # type: ignore[attr-defined]


# The built-in defaults; the data migration writes the same values as the global RiskLimit row.
DEFAULT_LIMITS = Limits(
    max_order_notional=Decimal("10000"),
    max_position_notional=Decimal("50000"),
    max_gross_exposure=Decimal("100000"),
    price_band=Decimal("0.05"),
    max_orders_per_minute=30,
    max_data_age_seconds=10,
    daily_loss_limit=Decimal("2000"),
    max_drawdown=Decimal("0.15"),
)


def limits_merged(base: Limits, overrides: Mapping[str, Any]) -> Limits:
    """`base` with every non-None value of `overrides` (names of `Limits` fields) replacing its own."""
    values = {name: getattr(base, name) for name in base.__slots__}  # type: ignore[attr-defined]
    values.update({k: v for k, v in overrides.items() if v is not None and k in values})
    return Limits(**values)


@dataclass(frozen=True, slots=True)
class OrderIntent:
    side: str  # "buy" | "sell"
    order_type: str  # "limit" | "market"
    quantity: Decimal
    limit_price: Decimal | None = None
    post_only: bool = False


@dataclass(frozen=True, slots=True)
class RiskSnapshot:
    """Everything the checks look at, loaded at one instant. Amounts in the instrument's quote currency."""

    now: datetime
    trading_state: str  # "active" | "reducing" | "halted"
    rules: InstrumentRules
    limits: Limits
    position_qty: Decimal = ZERO  # signed: long > 0, short < 0
    open_buy_qty: Decimal = ZERO  # remaining quantity of this instrument's other open buy orders
    open_sell_qty: Decimal = ZERO
    base_available: Decimal = ZERO  # balance less what open sells hold
    quote_available: Decimal = ZERO  # balance less what open buys hold
    mid: Decimal | None = None
    mid_at: datetime | None = None
    gross_exposure: Decimal = ZERO  # Σ |position| × mark over all instruments, now
    recent_orders: Sequence[datetime] = ()  # submission times of recent orders
    daily_pnl: Decimal = ZERO  # today's realised (net of fees) + unrealised PnL
    equity: Decimal | None = None
    high_water_mark: Decimal | None = None


def reduces_position(intent: OrderIntent, snap: RiskSnapshot) -> bool:
    """True when the order (with the open orders already working that way) shrinks the position, never flips it."""
    pos = snap.position_qty
    if intent.side == "sell":
        return pos > 0 and intent.quantity + snap.open_sell_qty <= pos
    return pos < 0 and intent.quantity + snap.open_buy_qty <= -pos


def check_instrument_rules(rules: InstrumentRules, intent: OrderIntent, ref_price: Decimal | None) -> list[RiskFailure]:
    """The exchange's order rules: minimum quantity, lot increment, price tick and minimum cost."""
    failures: list[RiskFailure] = []
    qty = intent.quantity
    if qty < rules.ordermin:
        failures.append(
            RiskFailure(RiskCode.BELOW_ORDERMIN, f"quantity {qty} is below {rules.symbol}'s minimum {rules.ordermin}")
        )
    if rules.qty_increment is not None and rules.qty_increment > 0 and qty % rules.qty_increment != 0:
        failures.append(
            RiskFailure(
                RiskCode.QTY_OFF_INCREMENT,
                f"quantity {qty} is not a multiple of {rules.symbol}'s increment {rules.qty_increment}",
            )
        )
    if intent.limit_price is not None and intent.limit_price % rules.tick_size != 0:
        failures.append(
            RiskFailure(
                RiskCode.PRICE_OFF_TICK,
                f"price {intent.limit_price} is not a multiple of {rules.symbol}'s tick {rules.tick_size}",
            )
        )
    if rules.costmin is not None and ref_price is not None and qty * ref_price < rules.costmin:
        failures.append(
            RiskFailure(
                RiskCode.BELOW_COSTMIN,
                f"order cost {qty * ref_price} is below {rules.symbol}'s minimum cost {rules.costmin} {rules.quote}",
            )
        )
    return failures


_UNAVAILABLE = frozenset({"delisted", "work_in_progress"})


def check_order(intent: OrderIntent, snap: RiskSnapshot) -> RiskResult:
    failures: list[RiskFailure] = []
    add = failures.append
    rules, limits = snap.rules, snap.limits
    qty = intent.quantity
    reducing = reduces_position(intent, snap)

    # Trading state.
    if snap.trading_state == "halted":
        add(RiskFailure(RiskCode.TRADING_HALTED, "trading is halted"))
    elif snap.trading_state == "reducing" and not reducing:
        add(RiskFailure(RiskCode.REDUCE_ONLY, "trading is reducing: only orders that shrink the position are allowed"))

    # Exchange status of the pair.
    status = rules.status
    if status == "maintenance":
        add(RiskFailure(RiskCode.EXCHANGE_MAINTENANCE, f"{rules.symbol} is in maintenance"))
    elif status == "cancel_only":
        add(RiskFailure(RiskCode.EXCHANGE_CANCEL_ONLY, f"{rules.symbol} accepts cancels only"))
    elif status == "post_only" and not (intent.order_type == "limit" and intent.post_only):
        add(RiskFailure(RiskCode.EXCHANGE_POST_ONLY, f"{rules.symbol} accepts post-only limit orders only"))
    elif status == "limit_only" and intent.order_type != "limit":
        add(RiskFailure(RiskCode.EXCHANGE_LIMIT_ONLY, f"{rules.symbol} accepts limit orders only"))
    elif status == "reduce_only" and not reducing:
        add(RiskFailure(RiskCode.EXCHANGE_REDUCE_ONLY, f"{rules.symbol} accepts position-reducing orders only"))
    elif status in _UNAVAILABLE or status not in _KNOWN_STATUSES:
        add(RiskFailure(RiskCode.EXCHANGE_UNAVAILABLE, f"{rules.symbol} is not tradable (status {status})"))

    # Market data.
    mid = snap.mid
    if mid is None or snap.mid_at is None:
        add(RiskFailure(RiskCode.NO_MARKET_DATA, f"no mid price for {rules.symbol}"))
        mid = None
    else:
        age = snap.now - snap.mid_at
        if age > timedelta(seconds=limits.max_data_age_seconds):
            add(
                RiskFailure(
                    RiskCode.STALE_MARKET_DATA,
                    f"mid price of {rules.symbol} is {age.total_seconds():.1f}s old "
                    f"(limit {limits.max_data_age_seconds}s)",
                )
            )

    price = intent.limit_price if intent.limit_price is not None else mid
    failures.extend(check_instrument_rules(rules, intent, price))

    if intent.limit_price is not None and mid is not None:
        distance = abs(intent.limit_price - mid) / mid
        if distance > limits.price_band:
            add(
                RiskFailure(
                    RiskCode.PRICE_BAND,
                    f"price {intent.limit_price} is {distance:.2%} from the mid {mid} (band {limits.price_band:.2%})",
                )
            )

    if price is not None:
        notional = qty * price
        if notional > limits.max_order_notional:
            add(
                RiskFailure(
                    RiskCode.MAX_ORDER_NOTIONAL,
                    f"order notional {notional} exceeds {limits.max_order_notional} {rules.quote}",
                )
            )
        if not reducing:
            pos = snap.position_qty
            projected = pos + snap.open_buy_qty + qty if intent.side == "buy" else pos - snap.open_sell_qty - qty
            growth = abs(projected) - abs(pos)
            if growth > 0:
                position_notional = abs(projected) * price
                if position_notional > limits.max_position_notional:
                    add(
                        RiskFailure(
                            RiskCode.MAX_POSITION,
                            f"position in {rules.symbol} would reach {position_notional} {rules.quote} "
                            f"(limit {limits.max_position_notional})",
                        )
                    )
                gross = snap.gross_exposure + growth * price
                if gross > limits.max_gross_exposure:
                    add(
                        RiskFailure(
                            RiskCode.MAX_GROSS_EXPOSURE,
                            f"gross exposure would reach {gross} (limit {limits.max_gross_exposure})",
                        )
                    )
        if intent.side == "buy":
            needed = notional * (ONE + FEE_RESERVE)
            if needed > snap.quote_available:
                add(
                    RiskFailure(
                        RiskCode.INSUFFICIENT_BALANCE,
                        f"needs {needed} {rules.quote} with fees, {snap.quote_available} available",
                    )
                )
    if intent.side == "sell" and qty > snap.base_available:
        add(RiskFailure(RiskCode.INSUFFICIENT_BALANCE, f"needs {qty} {rules.base}, {snap.base_available} available"))

    # Order rate.
    since = snap.now - ORDER_RATE_WINDOW
    recent = sum(1 for t in snap.recent_orders if t > since)
    if recent >= limits.max_orders_per_minute:
        add(
            RiskFailure(
                RiskCode.ORDER_RATE,
                f"{recent} orders in the last minute (limit {limits.max_orders_per_minute})",
            )
        )

    # Losses: only orders that reduce the position pass a breached limit.
    if not reducing:
        if snap.daily_pnl <= -limits.daily_loss_limit:
            add(
                RiskFailure(
                    RiskCode.DAILY_LOSS_LIMIT,
                    f"today's PnL {snap.daily_pnl} breaches the daily loss limit {limits.daily_loss_limit}",
                )
            )
        # The monitor compares the same `drawdown` (stored on its equity snapshot) with the same limit.
        dd = (
            None
            if snap.equity is None or snap.high_water_mark is None
            else drawdown(high_water_mark=snap.high_water_mark, equity=snap.equity)
        )
        if dd is not None and dd >= limits.max_drawdown:
            add(
                RiskFailure(
                    RiskCode.MAX_DRAWDOWN,
                    f"drawdown {dd:.2%} of the high-water mark reaches the limit {limits.max_drawdown:.2%}",
                )
            )
    return RiskResult(tuple(failures))


_KNOWN_STATUSES = frozenset(
    {"online", "cancel_only", "post_only", "limit_only", "reduce_only", "maintenance", "delisted", "work_in_progress"}
)


__all__ = [
    "DEFAULT_LIMITS",
    "InstrumentRules",
    "Limits",
    "OrderIntent",
    "RiskCode",
    "RiskFailure",
    "RiskResult",
    "RiskSnapshot",
    "check_instrument_rules",
    "check_order",
    "limits_merged",
    "reduces_position",
]
