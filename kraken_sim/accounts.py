"""The simulated user's account: balances, holds for open orders, fees and the ledger.

Fees are charged in the quote currency (Kraken's default, ``fciq``) at the maker or taker rate and rounded to
the quote asset's precision, as are the quote amounts booked in the ledger, so balances always equal the sum
of ledger entries exactly.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, ROUND_UP, Decimal

from kraken_sim.engine import Order, Side
from kraken_sim.ids import IdGenerator
from kraken_sim.instruments import Asset, InstrumentRegistry

log = logging.getLogger(__name__)
ZERO = Decimal(0)


def quantize(value: Decimal, places: int, rounding: str = ROUND_HALF_UP) -> Decimal:
    return value.quantize(Decimal(1).scaleb(-places), rounding=rounding)


@dataclass(frozen=True, slots=True)
class LedgerEntry:
    ledger_id: str
    ref_id: str
    ts_ns: int
    type: str  # trade, deposit, adjustment, …
    asset: Asset
    amount: Decimal
    fee: Decimal
    balance: Decimal


@dataclass(frozen=True, slots=True)
class AccountTrade:
    """One fill of one of the account's orders (a REST TradesHistory row, a WS ``trade`` execution)."""

    txid: str
    order: Order
    trade_id: int
    postxid: str
    price: Decimal
    qty: Decimal
    cost: Decimal  # price * qty, exact
    fee: Decimal
    maker: bool
    ts_ns: int
    ledger: tuple[LedgerEntry, LedgerEntry]


class Account:
    def __init__(
        self,
        registry: InstrumentRegistry,
        balances: dict[str, Decimal],
        ids: IdGenerator,
        maker_fee: Decimal,
        taker_fee: Decimal,
    ) -> None:
        self._registry = registry
        self._ids = ids
        self.maker_fee = maker_fee
        self.taker_fee = taker_fee
        self.balances: dict[str, Decimal] = {}
        for asset in registry.assets:
            self.balances[asset.code] = quantize(balances.get(asset.code, ZERO), asset.decimals)
        unknown = set(balances) - set(self.balances)
        if unknown:
            raise ValueError(f"balances for assets no configured instrument uses: {sorted(unknown)}")
        self.holds: dict[str, tuple[Asset, Decimal]] = {}  # order_id → (asset, amount held)
        self.ledger: list[LedgerEntry] = []
        self.trades: list[AccountTrade] = []

    # -- balances -----------------------------------------------------------------------------------------
    def held(self, asset: Asset) -> Decimal:
        return sum((amount for a, amount in self.holds.values() if a is asset), ZERO)

    def available(self, asset: Asset) -> Decimal:
        return self.balances[asset.code] - self.held(asset)

    def buy_hold(self, order: Order, price: Decimal, qty: Decimal) -> Decimal:
        """Quote held for ``qty`` bought at up to ``price``: the cost plus the taker fee, rounded up."""
        quote = order.instrument.quote
        return quantize(price * qty * (1 + self.taker_fee), quote.decimals, ROUND_UP)

    def required_funds(self, order: Order, est_cost: Decimal) -> tuple[Asset, Decimal]:
        """What must be available to accept ``order``; ``est_cost`` is the book walk for market buys."""
        inst = order.instrument
        if order.side is Side.SELL:
            return inst.base, order.remaining
        price = order.hold_price  # a limit, or a trigger not reached yet
        if price is None:  # a market order, or a triggered stop-loss / take-profit: the book walk
            return inst.quote, quantize(est_cost * (1 + self.taker_fee), inst.quote.decimals, ROUND_UP)
        return inst.quote, self.buy_hold(order, price, order.remaining)

    def update_hold(self, order: Order) -> None:
        """Hold what the order's open remainder may still need (at its limit, or at its trigger while it waits);
        release everything once it is closed or executes as a market order."""
        price = order.hold_price
        if not order.is_open or order.remaining <= 0 or price is None:
            self.holds.pop(order.order_id, None)
            return
        inst = order.instrument
        if order.side is Side.SELL:
            self.holds[order.order_id] = (inst.base, order.remaining)
        else:
            self.holds[order.order_id] = (inst.quote, self.buy_hold(order, price, order.remaining))

    # -- fills --------------------------------------------------------------------------------------------
    def apply_fill(
        self, order: Order, price: Decimal, qty: Decimal, *, maker: bool, trade_id: int, ts_ns: int
    ) -> AccountTrade:
        """Book one fill: balances, fee, two ledger entries with a shared ``ref_id``. ``order.filled`` and
        ``order.cost`` were already advanced by the engine."""
        inst = order.instrument
        cost = price * qty
        rate = self.maker_fee if maker else self.taker_fee
        fee = quantize(cost * rate, inst.quote.decimals)
        quote_amount = quantize(cost, inst.quote.decimals)
        txid = self._ids.trade_txid()
        if order.side is Side.BUY:
            base_delta, quote_delta = qty, -quote_amount
        else:
            base_delta, quote_delta = -qty, quote_amount
        self.balances[inst.base.code] += base_delta
        base_entry = LedgerEntry(
            self._ids.ledger_id(),
            txid,
            ts_ns,
            "trade",
            inst.base,
            base_delta,
            ZERO,
            self.balances[inst.base.code],
        )
        self.balances[inst.quote.code] += quote_delta - fee
        quote_entry = LedgerEntry(
            self._ids.ledger_id(),
            txid,
            ts_ns,
            "trade",
            inst.quote,
            quote_delta,
            fee,
            self.balances[inst.quote.code],
        )
        self.ledger.extend((base_entry, quote_entry))
        order.fee += fee
        order.trade_txids.append(txid)
        trade = AccountTrade(
            txid=txid,
            order=order,
            trade_id=trade_id,
            postxid=self._ids.trade_txid(),
            price=price,
            qty=qty,
            cost=cost,
            fee=fee,
            maker=maker,
            ts_ns=ts_ns,
            ledger=(base_entry, quote_entry),
        )
        self.trades.append(trade)
        if self.balances[inst.quote.code] < 0 or self.balances[inst.base.code] < 0:
            log.error("negative balance after %s: %s", txid, self.balances)
        return trade
