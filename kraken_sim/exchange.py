"""The exchange: order validation and placement for the account, the market participants' order flow,
system status, and the events that the WebSocket layer turns into messages.

Everything runs on one asyncio loop and every method here is synchronous, so a call sees and leaves a
consistent state (no locks). Public book changes and trades are collected during a ``batch()`` and published
once at its end: one market action gives one book update per subscribed depth, as on Kraken.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Protocol

from kraken_sim import errors as E
from kraken_sim.accounts import Account, AccountTrade, LedgerEntry
from kraken_sim.config import SimConfig
from kraken_sim.deadman import DeadManSwitch, checked_timeout
from kraken_sim.engine import (
    Fill,
    Order,
    OrderBook,
    OrderStatus,
    OrderType,
    Owner,
    Side,
    TimeInForce,
)
from kraken_sim.errors import KrakenError
from kraken_sim.ids import IdGenerator
from kraken_sim.instruments import Instrument, InstrumentRegistry
from kraken_sim.marketdata import Candle, MarketData, PublicTrade
from kraken_sim.ratelimit import DecayingCounter, cancel_cost
from kraken_sim.wire import NS, Clock, fixed

log = logging.getLogger(__name__)
ZERO = Decimal(0)
SYSTEM_STATUSES = ("online", "maintenance", "cancel_only", "post_only")

# Reasons on canceled orders. "User requested" and "Post only order" are Kraken's (recorded / matched by
# third-party clients); the others are constructed in the same style.
REASON_USER = "User requested"
REASON_POST_ONLY = "Post only order"
REASON_IOC = "Immediate or cancel"  # constructed
REASON_NO_LIQUIDITY = "Insufficient liquidity"  # constructed
REASON_SELF_TRADE = "Self trade prevention"  # constructed
REASON_NO_FUNDS = "Insufficient funds"  # constructed: a triggered buy that the account can no longer pay for


@dataclass(slots=True)
class OrderRequest:
    instrument: Instrument
    side: Side
    order_type: OrderType
    qty: Decimal
    limit_price: Decimal | None = None
    time_in_force: TimeInForce = TimeInForce.GTC
    post_only: bool = False
    cl_ord_id: str | None = None
    userref: int = 0
    validate: bool = False
    stp_type: str = "cancel_newest"
    trigger_price: Decimal | None = None  # stop-loss / take-profit
    trigger_reference: str = "last"


@dataclass(frozen=True, slots=True)
class ExecEvent:
    """One change to one of the account's orders, with the order's figures at that moment."""

    exec_type: str  # pending_new | new | status (triggered) | trade | filled | canceled
    order: Order
    ts_ns: int
    order_status: str
    cum_qty: Decimal
    cum_cost: Decimal
    fee_total: Decimal
    trade: AccountTrade | None = None
    reason: str | None = None

    @property
    def avg_price(self) -> Decimal:
        return self.cum_cost / self.cum_qty if self.cum_qty else ZERO


class EventSink(Protocol):
    def book_changed(self, symbol: str) -> None: ...

    def public_trades(self, symbol: str, trades: list[PublicTrade], candles: list[Candle]) -> None: ...

    def bbo_changed(self, symbol: str) -> None: ...

    def execution(self, event: ExecEvent) -> None: ...

    def ledger(self, entry: LedgerEntry) -> None: ...

    def status_changed(self, status: str) -> None: ...


class NullSink:
    def book_changed(self, symbol: str) -> None:
        pass

    def public_trades(self, symbol: str, trades: list[PublicTrade], candles: list[Candle]) -> None:
        pass

    def bbo_changed(self, symbol: str) -> None:
        pass

    def execution(self, event: ExecEvent) -> None:
        pass

    def ledger(self, entry: LedgerEntry) -> None:
        pass

    def status_changed(self, status: str) -> None:
        pass


def decimals_of(value: Decimal) -> int:
    exponent = value.normalize().as_tuple().exponent
    assert isinstance(exponent, int)
    return max(0, -exponent)


def order_description(order: Order) -> str:
    """REST ``descr.order``: ``buy 1.25000000 XBTUSD @ limit 27500.0``, ``… @ market``, ``… @ stop loss 27000.0``,
    ``… @ take profit 120.0`` (PROTOCOL.md §1.3)."""
    inst = order.instrument
    text = f"{order.side.value} {fixed(order.qty, inst.lot_decimals)} {inst.altname} @ "
    if order.order_type is OrderType.MARKET:
        return text + "market"
    price = order.limit_price if order.order_type is OrderType.LIMIT else order.trigger_price
    assert price is not None
    return text + f"{order.order_type.value.replace('-', ' ')} {fixed(price, inst.price_decimals)}"


class Exchange:
    def __init__(self, config: SimConfig, registry: InstrumentRegistry, clock: Clock, ids: IdGenerator) -> None:
        self.config = config
        self.registry = registry
        self.clock = clock
        self.ids = ids
        self.books: dict[str, OrderBook] = {i.symbol: OrderBook(i) for i in registry}
        self.account = Account(registry, config.balances, ids, config.maker_fee, config.taker_fee)
        self.marketdata = MarketData(list(registry), config.trade_tape_size)
        self.orders: dict[str, Order] = {}  # every account order, open and closed, in creation order
        self._open_cl_ord_ids: dict[str, Order] = {}
        self.status = "online"
        self.sink: EventSink = NullSink()
        self.trade_counters: dict[str, DecayingCounter] = {
            i.symbol: DecayingCounter(config.tier.trade_threshold, config.tier.trade_decay) for i in registry
        }
        self._trade_ids = {i.symbol: self._trade_id_iter(i.symbol) for i in registry}
        self._batch_depth = 0
        self._pending_trades: dict[str, list[PublicTrade]] = {}
        self._pending_candles: dict[str, dict[int, Candle]] = {}
        self._bbo: dict[str, tuple[Decimal | None, Decimal, Decimal | None, Decimal]] = {}
        self.deadman = DeadManSwitch(clock, self._deadman_fire)
        # Stop-loss and take-profit orders waiting for their trigger, per symbol, and the symbols to re-check.
        self._waiting: dict[str, list[Order]] = {i.symbol: [] for i in registry}
        self._trigger_check: set[str] = set()

    def _trade_id_iter(self, symbol: str) -> Iterator[int]:
        while True:
            yield self.ids.public_trade_id(symbol)

    # -- batching and publication -----------------------------------------------------------------------
    @contextlib.contextmanager
    def batch(self) -> Iterator[None]:
        self._batch_depth += 1
        try:
            yield
        finally:
            self._batch_depth -= 1
            if self._batch_depth == 0:
                self._flush()

    def _flush(self) -> None:
        for symbol, book in self.books.items():
            trades = self._pending_trades.pop(symbol, None)
            candles = self._pending_candles.pop(symbol, None)
            if book.dirty:
                book.dirty = False
                self.sink.book_changed(symbol)
                bbo = self._bbo_of(book)
                if bbo != self._bbo.get(symbol):
                    self._bbo[symbol] = bbo
                    if bbo[0] is not None and bbo[2] is not None:
                        self.marketdata[symbol].record_spread(self.clock.now_ns(), bbo[0], bbo[2])
                    self.sink.bbo_changed(symbol)
                if self._waiting[symbol]:
                    self._trigger_check.add(symbol)
            if trades:
                self.sink.public_trades(symbol, trades, list((candles or {}).values()))
                if self._waiting[symbol]:
                    self._trigger_check.add(symbol)
        while self._trigger_check:
            self._check_triggers(self._trigger_check.pop())

    @staticmethod
    def _bbo_of(book: OrderBook) -> tuple[Decimal | None, Decimal, Decimal | None, Decimal]:
        bid, ask = book.bids.best(), book.asks.best()
        return (
            bid,
            book.bids.qty[bid] if bid is not None else ZERO,
            ask,
            book.asks.qty[ask] if ask is not None else ZERO,
        )

    def _emit(
        self, exec_type: str, order: Order, *, trade: AccountTrade | None = None, reason: str | None = None
    ) -> None:
        self.sink.execution(
            ExecEvent(
                exec_type=exec_type,
                order=order,
                ts_ns=self.clock.now_ns(),
                order_status=order.ws_status,
                cum_qty=order.filled,
                cum_cost=order.cost,
                fee_total=order.fee,
                trade=trade,
                reason=reason,
            )
        )

    # -- system status ----------------------------------------------------------------------------------
    def set_status(self, status: str) -> None:
        if status not in SYSTEM_STATUSES:
            raise ValueError(f"unknown system status {status!r}")
        if status != self.status:
            log.info("system status %s -> %s", self.status, status)
            self.status = status
            self.sink.status_changed(status)

    @property
    def matching_enabled(self) -> bool:
        return self.status == "online"

    # -- account orders ---------------------------------------------------------------------------------
    def open_orders(self, symbol: str | None = None) -> list[Order]:
        return [o for o in self.orders.values() if o.is_open and (symbol is None or o.symbol == symbol)]

    def check_status_for_add(self, req: OrderRequest) -> None:
        if self.status == "maintenance":
            raise KrakenError(E.UNAVAILABLE)
        if self.status == "cancel_only":
            raise KrakenError(E.CANCEL_ONLY)
        if self.status == "post_only" and not (req.order_type is OrderType.LIMIT and req.post_only):
            raise KrakenError(E.POST_ONLY)

    def validate(self, req: OrderRequest) -> None:
        """Kraken's order checks, in the order it reports them. Raises ``KrakenError``."""
        inst = req.instrument
        self.check_status_for_add(req)
        if req.qty <= 0 or decimals_of(req.qty) > inst.lot_decimals:
            raise KrakenError(E.INVALID_ARGUMENTS)
        # A limit order's price, or a stop-loss / take-profit order's trigger price.
        price = req.limit_price if req.order_type is OrderType.LIMIT else req.trigger_price
        if req.order_type is OrderType.LIMIT or req.order_type.triggered:
            if price is None or price <= 0:
                raise KrakenError(E.INVALID_PRICE)
            if decimals_of(price) > inst.price_decimals:
                raise KrakenError(
                    f"{E.INVALID_PRICE}:{inst.rest_key} price can only be specified up to "
                    f"{inst.price_decimals} decimals."
                )
            if price % inst.tick_size != 0:
                raise KrakenError(E.TICK_SIZE)
        if req.post_only and req.order_type is not OrderType.LIMIT:
            raise KrakenError(E.INVALID_ARGUMENTS)
        if req.order_type.triggered and req.time_in_force is not TimeInForce.GTC:
            raise KrakenError(E.invalid("timeinforce"))  # a waiting order is good till canceled
        if req.qty < inst.ordermin:
            raise KrakenError(E.ORDER_MINIMUM)
        book = self.books[inst.symbol]
        if price is not None:
            est_cost = price * req.qty
        else:
            filled, est_cost = book.fill_estimate(req.side, req.qty, None)
            if filled < req.qty:
                # Not enough liquidity to price the whole order: value the rest at the last touched price.
                last = self.marketdata[inst.symbol].last_price
                est_cost += (req.qty - filled) * last
        if est_cost < inst.costmin:
            raise KrakenError(E.COST_MINIMUM)
        if req.cl_ord_id is not None and req.cl_ord_id in self._open_cl_ord_ids:
            raise KrakenError(E.DUPLICATE_ORDER)

    def place_order(self, req: OrderRequest, *, source: str = "api") -> Order:
        """Validate, charge the rate counter, check funds, then accept and match. Raises ``KrakenError``."""
        self.validate(req)
        inst = req.instrument
        limited = source != "external" and self.config.enforce_rate_limits
        if limited and len(self.open_orders(inst.symbol)) >= self.config.tier.max_open_orders:
            raise KrakenError(E.ORDERS_LIMIT)
        counter = self.trade_counters[inst.symbol]
        if limited and counter.would_exceed(Decimal(1)):
            raise KrakenError(E.ORDER_RATE_LIMIT)
        now = self.clock.now_ns()
        order = Order(
            order_id=self.ids.order_id(),
            instrument=inst,
            side=req.side,
            order_type=req.order_type,
            qty=req.qty,
            limit_price=req.limit_price,
            owner=Owner.ACCOUNT,
            time_in_force=req.time_in_force,
            post_only=req.post_only,
            cl_ord_id=req.cl_ord_id,
            userref=req.userref,
            source=source,
            opened_ns=now,
            stp_type=req.stp_type,
            trigger_price=req.trigger_price,
            trigger_reference=req.trigger_reference,
        )
        book = self.books[inst.symbol]
        est_cost = ZERO
        if req.order_type is OrderType.MARKET:
            _, est_cost = book.fill_estimate(req.side, req.qty, None)
        asset, needed = self.account.required_funds(order, est_cost)
        if self.account.available(asset) < needed:
            raise KrakenError(E.INSUFFICIENT_FUNDS)
        if req.validate:
            return order
        if limited:
            counter.add(Decimal(1))
        self.orders[order.order_id] = order
        if order.cl_ord_id is not None:
            self._open_cl_ord_ids[order.cl_ord_id] = order
        log.info("order %s accepted: %s (%s)", order.order_id, order_description(order), source)
        with self.batch():
            self._emit("pending_new", order)
            if order.post_only and book.crosses(order.side, order.limit_price or ZERO):
                self._close(order, OrderStatus.CANCELED, REASON_POST_ONLY)
                return order
            order.status = OrderStatus.OPEN
            self.account.update_hold(order)
            self._emit("new", order)
            if order.waits_for_trigger:
                self._waiting[inst.symbol].append(order)
                self._trigger_check.add(inst.symbol)  # a trigger the market has already reached fires at once
            else:
                self._execute(order, book)
        return order

    def _execute(self, order: Order, book: OrderBook) -> None:
        """Match an accepted (open) order, then rest or close what is left."""
        result = (
            book.match(order, self._trade_ids[order.symbol], self.clock.now_ns(), self._on_fill, self._self_trade)
            if self.matching_enabled or order.post_only
            else None
        )
        if not order.is_open:
            return  # fully filled inside _on_fill
        if result is not None and result.self_trade:
            self._close(order, OrderStatus.CANCELED, REASON_SELF_TRADE)
        elif order.limit_price is None:  # a market order, or a triggered stop-loss / take-profit
            self._close(order, OrderStatus.CANCELED, REASON_NO_LIQUIDITY)
        elif order.time_in_force is TimeInForce.IOC:
            self._close(order, OrderStatus.CANCELED, REASON_IOC)
        else:
            book.rest(order)
            if order.owner is Owner.ACCOUNT:
                self.account.update_hold(order)

    def _on_fill(self, fill: Fill) -> None:
        symbol = fill.maker.symbol
        trade = PublicTrade(
            symbol,
            fill.price,
            fill.qty,
            fill.taker.side,
            fill.taker.execution_type,
            fill.trade_id,
            fill.ts_ns,
        )
        self._pending_trades.setdefault(symbol, []).append(trade)
        for candle in self.marketdata[symbol].record(trade):
            self._pending_candles.setdefault(symbol, {})[candle.interval] = candle
        for order, maker in ((fill.maker, True), (fill.taker, False)):
            if order.remaining <= 0:
                order.status = OrderStatus.CLOSED
                order.closed_ns = fill.ts_ns
            if order.owner is not Owner.ACCOUNT:
                continue
            account_trade = self.account.apply_fill(
                order, fill.price, fill.qty, maker=maker, trade_id=fill.trade_id, ts_ns=fill.ts_ns
            )
            self.account.update_hold(order)
            self._emit("trade", order, trade=account_trade)
            for entry in account_trade.ledger:
                self.sink.ledger(entry)
            if order.status is OrderStatus.CLOSED:
                if order.cl_ord_id is not None:
                    self._open_cl_ord_ids.pop(order.cl_ord_id, None)
                self._emit("filled", order)
            log.info(
                "fill %s %s %s @ %s (%s)",
                order.order_id,
                order.side.value,
                fill.qty,
                fill.price,
                "maker" if maker else "taker",
            )

    def _self_trade(self, resting: Order) -> None:
        """Self-trade prevention cancels a resting account order (``cancel_oldest``, ``cancel_both``)."""
        self._close(resting, OrderStatus.CANCELED, REASON_SELF_TRADE)

    def _close(self, order: Order, status: OrderStatus, reason: str) -> None:
        order.status = status
        order.reason = reason
        order.closed_ns = self.clock.now_ns()
        self.books[order.symbol].remove(order)
        if order.waits_for_trigger:
            self._waiting[order.symbol].remove(order)
        if order.owner is Owner.ACCOUNT:
            self.account.update_hold(order)
            if order.cl_ord_id is not None:
                self._open_cl_ord_ids.pop(order.cl_ord_id, None)
            self._emit("canceled", order, reason=reason)

    def conversion_rate(self, source: str, target: str) -> Decimal | None:
        """How much of asset ``target`` one unit of ``source`` is worth at the last trade prices, through the
        listed pairs (either way round, several hops if needed); None when no pair path joins them."""
        rates: dict[str, Decimal] = {source: Decimal(1)}
        frontier = [source]
        while frontier and target not in rates:
            code = frontier.pop(0)
            for inst in self.registry:
                price = self.marketdata[inst.symbol].last_price
                if inst.base.code == code and inst.quote.code not in rates:
                    rates[inst.quote.code] = rates[code] * price
                    frontier.append(inst.quote.code)
                elif inst.quote.code == code and inst.base.code not in rates and price:
                    rates[inst.base.code] = rates[code] / price
                    frontier.append(inst.base.code)
        return rates.get(target)

    # -- stop-loss and take-profit: waiting for the trigger -------------------------------------------------
    def reference_price(self, symbol: str, reference: str) -> Decimal:
        """``last``: the last trade's price. ``index``: Kraken's index price, which the simulator has no outside
        market for: the book's mid (the last trade's price while one side is empty)."""
        md = self.marketdata[symbol]
        if reference == "index":
            book = self.books[symbol]
            bid, ask = book.best_bid(), book.best_ask()
            if bid is not None and ask is not None:
                return (bid + ask) / 2
        return md.last_price

    @staticmethod
    def trigger_reached(order: Order, price: Decimal) -> bool:
        """A sell stop-loss (a buy take-profit) fires when the price falls to its trigger; a buy stop-loss (a sell
        take-profit) when it rises to it."""
        assert order.trigger_price is not None
        falling = (order.order_type is OrderType.STOP_LOSS) == (order.side is Side.SELL)
        return price <= order.trigger_price if falling else price >= order.trigger_price

    def _check_triggers(self, symbol: str) -> None:
        if not self.matching_enabled:
            return  # nothing executes outside online; checked again when the market moves
        for order in list(self._waiting[symbol]):
            if order not in self._waiting[symbol]:
                continue  # closed by an earlier trigger's execution (self-trade prevention)
            price = self.reference_price(symbol, order.trigger_reference)
            if self.trigger_reached(order, price):
                self._trigger(order, price)

    def _trigger(self, order: Order, price: Decimal) -> None:
        """The trigger is reached: the order executes as a market order for what is left."""
        self._waiting[order.symbol].remove(order)
        order.triggered_ns = self.clock.now_ns()
        order.trigger_last_price = price
        log.info("order %s triggered at %s (%s)", order.order_id, price, order.trigger_reference)
        book = self.books[order.symbol]
        with self.batch():
            self.account.update_hold(order)  # its trigger-price hold is released: it pays as it fills
            self._emit("status", order)
            if order.side is Side.BUY:
                _, est_cost = book.fill_estimate(order.side, order.remaining, None)
                asset, needed = self.account.required_funds(order, est_cost)
                if self.account.available(asset) < needed:
                    self._close(order, OrderStatus.CANCELED, REASON_NO_FUNDS)
                    return
            self._execute(order, book)

    def find_open(
        self, *, txid: str | None = None, cl_ord_id: str | None = None, userref: int | None = None
    ) -> list[Order]:
        if txid is not None:
            order = self.orders.get(txid)
            return [order] if order is not None and order.is_open else []
        if cl_ord_id is not None:
            found = self._open_cl_ord_ids.get(cl_ord_id)
            return [found] if found is not None else []
        if userref is not None:
            return [o for o in self.open_orders() if o.userref == userref]
        return []

    def cancel_orders(self, orders: list[Order], *, source: str = "api") -> int:
        """Cancel open account orders, charging the per-pair counter by each order's age."""
        if self.status == "maintenance":
            raise KrakenError(E.UNAVAILABLE)
        if not orders:
            raise KrakenError(E.UNKNOWN_ORDER)
        limited = source not in ("external", "dead_man_switch") and self.config.enforce_rate_limits
        now = self.clock.now_ns()
        costs: dict[str, Decimal] = {}
        for order in orders:
            age = Decimal(max(0, now - order.opened_ns)) / NS
            costs[order.symbol] = costs.get(order.symbol, ZERO) + cancel_cost(age)
        if limited:
            for symbol, cost in costs.items():
                if self.trade_counters[symbol].would_exceed(cost):
                    raise KrakenError(E.ORDER_RATE_LIMIT)
            for symbol, cost in costs.items():
                self.trade_counters[symbol].add(cost)
        with self.batch():
            for order in orders:
                self._close(order, OrderStatus.CANCELED, REASON_USER)
                log.info("order %s canceled (%s)", order.order_id, source)
        return len(orders)

    # -- the dead man's switch (CancelAllOrdersAfter / cancel_all_orders_after) ----------------------------
    def cancel_all_after(self, timeout: object) -> tuple[int, int]:
        """Arm, re-arm (the countdown restarts) or, with 0, disarm the account's dead man's switch
        (``kraken_sim.deadman``). Returns ``(now_ns, trigger_ns)``, ``trigger_ns`` 0 when off."""
        timeout = checked_timeout(timeout)
        if self.status == "maintenance":
            raise KrakenError(E.UNAVAILABLE)
        return self.deadman.arm(timeout)

    def _deadman_fire(self) -> None:
        try:
            count = self.cancel_all(source="dead_man_switch")
        except KrakenError as exc:  # e.g. maintenance: logged, the switch stays off as after any firing
            log.warning("dead man's switch fired but could not cancel: %s", exc.code)
            return
        log.warning("dead man's switch fired: %d open orders canceled", count)

    def cancel_all(self, *, source: str = "api") -> int:
        orders = self.open_orders()
        if not orders:
            if self.status == "maintenance":
                raise KrakenError(E.UNAVAILABLE)
            return 0
        return self.cancel_orders(orders, source=source)

    # -- faults: actions on the account from outside our system -------------------------------------------
    def external_fill(self, order_id: str, qty: Decimal | None = None) -> AccountTrade:
        """A counterparty takes (part of) one of the account's resting orders, whatever its queue position."""
        order = self.orders.get(order_id)
        if order is None or not order.is_open or order.limit_price is None:
            raise KrakenError(E.UNKNOWN_ORDER)
        book = self.books[order.symbol]
        if order.order_id not in book.orders:
            raise KrakenError(E.UNKNOWN_ORDER)
        take = order.remaining if qty is None else min(qty, order.remaining)
        if take <= 0:
            raise KrakenError(E.INVALID_ARGUMENTS)
        taker = Order(
            order_id=self.ids.participant_order_id(),
            instrument=order.instrument,
            side=order.side.opposite,
            order_type=OrderType.LIMIT,
            qty=take,
            limit_price=order.limit_price,
            owner=Owner.MARKET,
            source="external",
            opened_ns=self.clock.now_ns(),
            status=OrderStatus.OPEN,
        )
        before = len(self.account.trades)
        with self.batch():
            book.fill_resting(
                order, taker, take, next(self._trade_ids[order.symbol]), self.clock.now_ns(), self._on_fill
            )
        return self.account.trades[before]

    # -- the market participants -------------------------------------------------------------------------
    def participant_limit(self, inst: Instrument, side: Side, price: Decimal, qty: Decimal) -> Order | None:
        """A participant's limit order. Outside ``online`` an order that would trade is not placed."""
        book = self.books[inst.symbol]
        if not self.matching_enabled and book.crosses(side, price):
            return None
        order = Order(
            order_id=self.ids.participant_order_id(),
            instrument=inst,
            side=side,
            order_type=OrderType.LIMIT,
            qty=qty,
            limit_price=price,
            owner=Owner.MARKET,
            source="market",
            opened_ns=self.clock.now_ns(),
            status=OrderStatus.OPEN,
        )
        with self.batch():
            self._execute(order, book)
        return order

    def participant_market(self, inst: Instrument, side: Side, qty: Decimal) -> Order | None:
        if not self.matching_enabled:
            return None
        order = Order(
            order_id=self.ids.participant_order_id(),
            instrument=inst,
            side=side,
            order_type=OrderType.MARKET,
            qty=qty,
            limit_price=None,
            owner=Owner.MARKET,
            source="market",
            opened_ns=self.clock.now_ns(),
            status=OrderStatus.OPEN,
        )
        with self.batch():
            self._execute(order, self.books[inst.symbol])
        return order

    def participant_cancel(self, order: Order) -> bool:
        if not order.is_open or order.owner is not Owner.MARKET:
            return False
        with self.batch():
            order.status = OrderStatus.CANCELED
            order.closed_ns = self.clock.now_ns()
            return self.books[order.symbol].remove(order)

    def participant_amend(self, order: Order, new_remaining: Decimal) -> None:
        if order.is_open and order.owner is Owner.MARKET and new_remaining > 0:
            with self.batch():
                self.books[order.symbol].amend_remaining(order, new_remaining)
