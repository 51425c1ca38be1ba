"""A synthetic trade tape at a fixed message rate: the load generator of the ingest benchmarks.

The market generator is bounded by its matching engine (a few thousand messages a second), so throughput and
latency tests of the receiving side need a cheaper source. `TradeFlood` publishes v2 `trade` updates
(`{"channel":"trade","type":"update","data":[...]}`, the same shape as the generator's) to the connections
subscribed to a symbol's trades, at `rate` messages a second in total (spread round-robin over the symbols),
for `seconds`. Prices follow a seeded random walk on the instrument's tick; quantities are multiples of its lot
step. Each message's trades carry one timestamp: the wall clock when the message was made (strictly increasing
per symbol at microsecond precision), so a receiver can measure exchange → receive latency.

It keeps its own record of what it sent (per symbol and per second: count, open, high, low, close, volume,
notional, first and last trade id), which benchmarks compare with what the receiver stored. These trades never
touch the order books, the REST `Trades` tape or the OHLC candles: the flood is a wire-level load, not market
activity.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from kraken_sim.instruments import Instrument
from kraken_sim.wire import fixed

log = logging.getLogger(__name__)

TICK_S = 0.001  # the pacing loop's period; each tick sends what is due
MAX_CATCH_UP_S = 2.0  # after a stall, at most this much backlog is made up (the rest is skipped, counted)
QTY_LOTS = 200  # quantities are 1..QTY_LOTS lot-multiples of `qty_unit`


@dataclass(slots=True)
class SecondRecord:
    """What one symbol's flood sent in one wall-clock second (exact Decimals)."""

    count: int
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: Decimal
    notional: Decimal
    first_id: int
    last_id: int

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "open": str(self.open),
            "high": str(self.high),
            "low": str(self.low),
            "close": str(self.close),
            "volume": str(self.volume),
            "notional": str(self.notional),
            "first_id": self.first_id,
            "last_id": self.last_id,
        }


@dataclass(slots=True)
class _SymbolTape:
    inst: Instrument
    ticks: int  # current price in ticks
    next_id: int
    qty_unit: Decimal
    last_us: int = 0
    seconds: dict[int, SecondRecord] = field(default_factory=dict)
    # (price, qty) Decimal pairs and their wire text, cached per value: the walk revisits the same prices.
    price_text: dict[int, tuple[Decimal, str]] = field(default_factory=dict)


class TradeFlood:
    def __init__(self, publish: Callable[[str, str], int], registry: Any) -> None:
        """`publish(symbol, text)` sends one trade message to the symbol's trade subscribers and returns how
        many connections it reached."""
        self._publish = publish
        self._registry = registry
        self._task: asyncio.Task[None] | None = None
        self._tapes: dict[str, _SymbolTape] = {}
        self.rate = 0.0
        self.seconds = 0.0
        self.trades_per_message = 1
        self.messages_sent = 0
        self.trades_sent = 0
        self.messages_unheard = 0  # made while nobody was subscribed (not recorded as sent)
        self.skipped = 0  # messages not made because the loop fell behind by more than MAX_CATCH_UP_S
        self.started_ns = 0
        self.finished_ns = 0

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    def start(
        self,
        symbols: list[str],
        *,
        rate: float,
        seconds: float,
        trades_per_message: int = 1,
        seed: int = 1,
        first_trade_id: int = 1_000_000_000,
    ) -> None:
        """Start (or restart, clearing the record) a flood. Raises ValueError on bad arguments."""
        if not symbols:
            raise ValueError("symbols must name at least one instrument")
        if not 0 < rate <= 200_000:
            raise ValueError("rate must be in (0, 200000] messages/s")
        if not 0 < seconds <= 86_400:
            raise ValueError("seconds must be in (0, 86400]")
        if not 1 <= trades_per_message <= 100:
            raise ValueError("trades_per_message must be in 1..100")
        tapes: dict[str, _SymbolTape] = {}
        rng = random.Random(seed)
        for n, symbol in enumerate(symbols):
            inst = self._registry.by_symbol(symbol)
            if inst is None:
                raise ValueError(f"unknown symbol {symbol!r}")
            ticks = int(inst.initial_price / inst.tick_size)
            unit = max(inst.lot_step, (inst.typical_qty / 50).quantize(inst.lot_step))
            tapes[inst.symbol] = _SymbolTape(inst, ticks, first_trade_id + n * 1_000_000_000, unit)
        self.stop()
        self._tapes = tapes
        self.rate, self.seconds, self.trades_per_message = rate, seconds, trades_per_message
        self.messages_sent = self.trades_sent = self.messages_unheard = self.skipped = 0
        self.started_ns, self.finished_ns = time.time_ns(), 0
        self._task = asyncio.get_running_loop().create_task(self._run(rng), name="trade-flood")
        log.info("trade flood: %s at %.0f msg/s for %.0f s", ",".join(tapes), rate, seconds)

    def stop(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            self.finished_ns = time.time_ns()

    async def _run(self, rng: random.Random) -> None:
        tapes = list(self._tapes.values())
        start = time.perf_counter()
        made = 0
        try:
            while True:
                elapsed = time.perf_counter() - start
                if elapsed >= self.seconds:
                    break
                due = int(elapsed * self.rate) + 1 - made
                limit = int(self.rate * MAX_CATCH_UP_S) + 1
                if due > limit:
                    self.skipped += due - limit
                    made += due - limit
                    due = limit
                for _ in range(min(due, int(self.rate * TICK_S * 20) + 1)):  # catch up over a few ticks
                    self._send(tapes[made % len(tapes)], rng)
                    made += 1
                await asyncio.sleep(TICK_S)
        finally:
            self.finished_ns = time.time_ns()
            log.info("trade flood finished: %d messages, %d trades", self.messages_sent, self.trades_sent)

    def _send(self, tape: _SymbolTape, rng: random.Random) -> None:
        inst = tape.inst
        now_us = time.time_ns() // 1000
        if now_us <= tape.last_us:
            now_us = tape.last_us + 1
        tape.last_us = now_us
        second, micros = divmod(now_us, 1_000_000)
        stamp = f"{datetime.fromtimestamp(second, UTC):%Y-%m-%dT%H:%M:%S}.{micros:06d}Z"
        items = []
        made: list[tuple[Decimal, Decimal, int]] = []
        for _ in range(self.trades_per_message):
            tape.ticks = max(1, tape.ticks + rng.choice((-1, 0, 0, 1)))
            cached = tape.price_text.get(tape.ticks)
            if cached is None:
                price = inst.tick_size * tape.ticks
                cached = tape.price_text[tape.ticks] = (price, fixed(price, inst.price_decimals))
            price, price_text = cached
            qty = tape.qty_unit * rng.randint(1, QTY_LOTS)
            side = "buy" if rng.random() < 0.5 else "sell"
            trade_id = tape.next_id
            tape.next_id += 1
            items.append(
                f'{{"symbol":"{inst.symbol}","side":"{side}","price":{price_text},'
                f'"qty":{fixed(qty, inst.lot_decimals)},"ord_type":"market","trade_id":{trade_id},'
                f'"timestamp":"{stamp}"}}'
            )
            made.append((price, qty, trade_id))
        text = '{"channel":"trade","type":"update","data":[' + ",".join(items) + "]}"
        if not self._publish(inst.symbol, text):
            self.messages_unheard += 1
            return
        self.messages_sent += 1
        self.trades_sent += len(made)
        record = tape.seconds.get(second)
        for price, qty, trade_id in made:
            if record is None:
                record = tape.seconds[second] = SecondRecord(
                    0, price, price, price, price, Decimal(0), Decimal(0), trade_id, trade_id
                )
            record.count += 1
            if price > record.high:
                record.high = price
            if price < record.low:
                record.low = price
            record.close = price
            record.volume += qty
            record.notional += price * qty
            record.last_id = trade_id

    def describe(self, *, seconds: bool = True) -> dict[str, Any]:
        """The flood's counters and (with `seconds`) its per-symbol, per-second record."""
        out: dict[str, Any] = {
            "running": self.running,
            "rate": self.rate,
            "seconds": self.seconds,
            "trades_per_message": self.trades_per_message,
            "messages_sent": self.messages_sent,
            "trades_sent": self.trades_sent,
            "messages_unheard": self.messages_unheard,
            "skipped": self.skipped,
            "started_ns": self.started_ns,
            "finished_ns": self.finished_ns,
        }
        if seconds:
            out["symbols"] = {
                symbol: {str(sec): rec.as_dict() for sec, rec in tape.seconds.items()}
                for symbol, tape in self._tapes.items()
            }
        return out
