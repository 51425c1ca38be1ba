"""Order books and price-time priority matching.

The engine knows orders, price levels and fills. It does not know balances, fees or messages: the exchange
(``exchange.py``) validates orders, applies fills to the account and publishes what happened.
"""

from __future__ import annotations

import bisect
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

from kraken_sim.instruments import Instrument

ZERO = Decimal(0)


class Side(StrEnum):
    BUY = "buy"
    SELL = "sell"

    @property
    def opposite(self) -> Side:
        return Side.SELL if self is Side.BUY else Side.BUY


class OrderType(StrEnum):
    LIMIT = "limit"
    MARKET = "market"
    STOP_LOSS = "stop-loss"  # rests untriggered; a market order once the reference price reaches the trigger
    TAKE_PROFIT = "take-profit"

    @property
    def triggered(self) -> bool:
        """An order type that waits for its trigger price (``stop-loss``, ``take-profit``)."""
        return self in (OrderType.STOP_LOSS, OrderType.TAKE_PROFIT)


# Self-trade prevention (WebSocket ``stp_type``; REST ``stptype`` spells them with hyphens).
STP_TYPES = ("cancel_newest", "cancel_oldest", "cancel_both")
TRIGGER_REFERENCES = ("last", "index")


class TimeInForce(StrEnum):
    GTC = "GTC"
    IOC = "IOC"


class OrderStatus(StrEnum):
    """Kraken REST statuses; the v2 ``order_status`` adds ``partially_filled`` (see ``ws_status``)."""

    PENDING = "pending"
    OPEN = "open"
    CLOSED = "closed"
    CANCELED = "canceled"
    EXPIRED = "expired"


class Owner(StrEnum):
    ACCOUNT = "account"  # the simulated user's account: our system, or "external" actions on it
    MARKET = "market"  # the generated market participants


@dataclass(slots=True, eq=False)
class Order:
    order_id: str
    instrument: Instrument
    side: Side
    order_type: OrderType
    qty: Decimal
    limit_price: Decimal | None
    owner: Owner
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    cl_ord_id: str | None = None
    userref: int = 0
    source: str = "api"  # api | ws | external | market
    opened_ns: int = 0
    closed_ns: int | None = None
    filled: Decimal = ZERO
    cost: Decimal = ZERO  # sum of price * qty over fills
    fee: Decimal = ZERO
    status: OrderStatus = OrderStatus.PENDING
    reason: str | None = None
    trade_txids: list[str] = field(default_factory=list)
    priority: int = 0
    stp_type: str = "cancel_newest"
    trigger_price: Decimal | None = None  # stop-loss / take-profit
    trigger_reference: str = "last"  # last | index
    triggered_ns: int | None = None  # when the trigger price was reached
    trigger_last_price: Decimal | None = None  # the reference price that reached it

    @property
    def is_triggered(self) -> bool:
        return self.triggered_ns is not None

    @property
    def waits_for_trigger(self) -> bool:
        return self.order_type.triggered and self.triggered_ns is None

    @property
    def execution_type(self) -> str:
        """How the order executes: a triggered stop-loss or take-profit is a market order (Kraken reports the
        new execution model after the trigger)."""
        return OrderType.MARKET.value if self.order_type.triggered else self.order_type.value

    @property
    def hold_price(self) -> Decimal | None:
        """The price funds are held at while the order rests: its limit, or its trigger until it triggers."""
        if self.order_type is OrderType.LIMIT:
            return self.limit_price
        return self.trigger_price if self.waits_for_trigger else None

    @property
    def remaining(self) -> Decimal:
        return self.qty - self.filled

    @property
    def symbol(self) -> str:
        return self.instrument.symbol

    @property
    def is_open(self) -> bool:
        return self.status in (OrderStatus.PENDING, OrderStatus.OPEN)

    @property
    def avg_price(self) -> Decimal:
        return self.cost / self.filled if self.filled else ZERO

    @property
    def ws_status(self) -> str:
        """WebSocket v2 ``order_status``."""
        if self.status is OrderStatus.PENDING:
            return "pending_new"
        if self.status is OrderStatus.OPEN:
            return "partially_filled" if self.filled > 0 else "new"
        if self.status is OrderStatus.CLOSED:
            return "filled"
        return self.status.value


@dataclass(frozen=True, slots=True)
class Fill:
    maker: Order
    taker: Order
    price: Decimal
    qty: Decimal
    trade_id: int  # public, per book
    ts_ns: int


class BookSide:
    """One side of a book: FIFO queues of orders per price level, prices kept sorted ascending."""

    def __init__(self, is_bid: bool) -> None:
        self.is_bid = is_bid
        self._prices: list[Decimal] = []
        self.levels: dict[Decimal, deque[Order]] = {}
        self.qty: dict[Decimal, Decimal] = {}

    def __len__(self) -> int:
        return len(self._prices)

    def best(self) -> Decimal | None:
        if not self._prices:
            return None
        return self._prices[-1] if self.is_bid else self._prices[0]

    def worst(self) -> Decimal | None:
        if not self._prices:
            return None
        return self._prices[0] if self.is_bid else self._prices[-1]

    def prices_best_first(self) -> Iterator[Decimal]:
        return reversed(self._prices) if self.is_bid else iter(self._prices)

    def top(self, n: int) -> list[tuple[Decimal, Decimal]]:
        prices = self._prices[::-1][:n] if self.is_bid else self._prices[:n]
        return [(p, self.qty[p]) for p in prices]

    def rank(self, price: Decimal) -> int:
        """0-based position of ``price`` counted from the best level."""
        i = bisect.bisect_left(self._prices, price)
        return len(self._prices) - 1 - i if self.is_bid else i

    def add(self, order: Order) -> None:
        assert order.limit_price is not None
        price = order.limit_price
        level = self.levels.get(price)
        if level is None:
            level = deque()
            self.levels[price] = level
            self.qty[price] = ZERO
            bisect.insort(self._prices, price)
        level.append(order)
        self.qty[price] += order.remaining

    def reduce(self, price: Decimal, qty: Decimal) -> None:
        self.qty[price] -= qty

    def remove(self, order: Order) -> None:
        assert order.limit_price is not None
        price = order.limit_price
        level = self.levels.get(price)
        if level is None:
            return
        try:
            level.remove(order)
        except ValueError:
            return
        self.qty[price] -= order.remaining
        if not level:
            self._drop_level(price)

    def remove_filled(self, order: Order) -> None:
        """Take a fully filled order out of its level (its quantity was already reduced)."""
        assert order.limit_price is not None
        level = self.levels[order.limit_price]
        level.remove(order)
        if not level:
            self._drop_level(order.limit_price)

    def pop_front(self, price: Decimal) -> None:
        level = self.levels[price]
        level.popleft()
        if not level:
            self._drop_level(price)

    def _drop_level(self, price: Decimal) -> None:
        del self.levels[price]
        del self.qty[price]
        i = bisect.bisect_left(self._prices, price)
        del self._prices[i]


@dataclass(slots=True)
class MatchResult:
    fills: list[Fill]
    self_trade: bool = False


class OrderBook:
    def __init__(self, instrument: Instrument) -> None:
        self.instrument = instrument
        self.bids = BookSide(is_bid=True)
        self.asks = BookSide(is_bid=False)
        self.orders: dict[str, Order] = {}  # resting orders by id
        self._priority = 0
        self.dirty = False

    def side(self, side: Side) -> BookSide:
        return self.bids if side is Side.BUY else self.asks

    def best_bid(self) -> Decimal | None:
        return self.bids.best()

    def best_ask(self) -> Decimal | None:
        return self.asks.best()

    def crosses(self, side: Side, price: Decimal) -> bool:
        """Would a limit order at ``price`` take liquidity?"""
        best = self.asks.best() if side is Side.BUY else self.bids.best()
        if best is None:
            return False
        return price >= best if side is Side.BUY else price <= best

    def fill_estimate(self, side: Side, qty: Decimal, limit: Decimal | None) -> tuple[Decimal, Decimal]:
        """(qty, cost) that an order would take from the book now, without changing it."""
        opposite = self.asks if side is Side.BUY else self.bids
        left = qty
        cost = ZERO
        for price in opposite.prices_best_first():
            if left <= 0:
                break
            if limit is not None and (price > limit if side is Side.BUY else price < limit):
                break
            take = min(left, opposite.qty[price])
            cost += take * price
            left -= take
        return qty - left, cost

    def match(
        self,
        taker: Order,
        next_trade_id: Iterator[int],
        ts_ns: int,
        on_fill: Callable[[Fill], None],
        on_self_trade: Callable[[Order], None],
    ) -> MatchResult:
        """Fill ``taker`` against resting orders, best price first, oldest first within a price.
        ``on_fill`` runs after each fill, when both orders' figures include that fill and no later one.
        When two account orders would trade, the taker's ``stp_type`` decides: ``cancel_newest`` stops the taker
        (``self_trade``), ``cancel_oldest`` has ``on_self_trade`` cancel the resting order and goes on,
        ``cancel_both`` does both."""
        opposite = self.asks if taker.side is Side.BUY else self.bids
        result = MatchResult(fills=[])
        while taker.remaining > 0:
            best = opposite.best()
            if best is None:
                break
            if taker.limit_price is not None and (
                best > taker.limit_price if taker.side is Side.BUY else best < taker.limit_price
            ):
                break
            maker = opposite.levels[best][0]
            if maker.owner is Owner.ACCOUNT and taker.owner is Owner.ACCOUNT:
                if taker.stp_type != "cancel_newest":
                    on_self_trade(maker)  # takes it out of the book
                if taker.stp_type != "cancel_oldest":
                    result.self_trade = True
                    break
                continue
            qty = min(taker.remaining, maker.remaining)
            maker.filled += qty
            maker.cost += qty * best
            taker.filled += qty
            taker.cost += qty * best
            opposite.reduce(best, qty)
            if maker.remaining <= 0:
                opposite.pop_front(best)
                self.orders.pop(maker.order_id, None)
            self.dirty = True
            fill = Fill(maker, taker, best, qty, next(next_trade_id), ts_ns)
            result.fills.append(fill)
            on_fill(fill)
        return result

    def fill_resting(
        self,
        maker: Order,
        taker: Order,
        qty: Decimal,
        trade_id: int,
        ts_ns: int,
        on_fill: Callable[[Fill], None],
    ) -> Fill:
        """Fill one given resting order, whatever its place in the queue (an out-of-band execution)."""
        assert maker.limit_price is not None
        assert maker.order_id in self.orders
        price = maker.limit_price
        qty = min(qty, maker.remaining)
        side = self.side(maker.side)
        maker.filled += qty
        maker.cost += qty * price
        taker.filled += qty
        taker.cost += qty * price
        side.reduce(price, qty)
        if maker.remaining <= 0:
            side.remove_filled(maker)
            self.orders.pop(maker.order_id, None)
        self.dirty = True
        fill = Fill(maker, taker, price, qty, trade_id, ts_ns)
        on_fill(fill)
        return fill

    def rest(self, order: Order) -> None:
        self._priority += 1
        order.priority = self._priority
        self.side(order.side).add(order)
        self.orders[order.order_id] = order
        self.dirty = True

    def remove(self, order: Order) -> bool:
        if self.orders.pop(order.order_id, None) is None:
            return False
        self.side(order.side).remove(order)
        self.dirty = True
        return True

    def amend_remaining(self, order: Order, new_remaining: Decimal) -> None:
        """Change a resting order's open quantity in place (a participant refreshing its quote)."""
        assert order.limit_price is not None
        assert new_remaining > 0
        delta = new_remaining - order.remaining
        order.qty += delta
        self.side(order.side).qty[order.limit_price] += delta
        self.dirty = True
