"""The other market participants: a seeded order-flow generator, or the replay of a recorded v2 book stream.

Generator: each instrument has a latent fair price that follows regimes (calm random walk, trend, mean
reversion, volatility burst). Participants quote limit orders around it, cancel stale quotes and send market
orders leaning toward it, so the book follows the path and trades print as it moves. All randomness comes from
one ``random.Random`` per instrument seeded from ``--seed``: the same seed gives the same order flow, book
messages and trades (wall-clock timestamps aside). Floats appear only as the random draws; prices and
quantities are Decimal from the moment they are formed.

Replay: the recorded levels are placed as participant orders (one per level) and updated as the recording
says, then each side is cut back to the recorded depth, so the engine's book is the recorded book and the
``book`` channel reproduces the recorded checksums while the account has no order at those prices.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from kraken_sim.engine import Order, Owner, Side
from kraken_sim.exchange import Exchange
from kraken_sim.feeds import book_checksum
from kraken_sim.instruments import Instrument

log = logging.getLogger(__name__)
ZERO = Decimal(0)
MAX_STEPS_PER_WAKE = 200
FAIR_QUANTUM = Decimal("0.000001")


@dataclass(frozen=True, slots=True)
class RegimeSpec:
    name: str
    weight: float
    vol: Decimal  # per-step standard deviation, in level spacings
    drift: Decimal  # per-step drift magnitude, in level spacings (sign drawn per regime)
    reversion: Decimal  # pull toward the anchor per step
    mean_steps: float


REGIMES: tuple[RegimeSpec, ...] = (
    RegimeSpec("calm", 0.35, Decimal("1.0"), ZERO, ZERO, 400),
    RegimeSpec("trend", 0.25, Decimal("0.8"), Decimal("0.3"), ZERO, 300),
    RegimeSpec("mean_reversion", 0.30, Decimal("1.0"), ZERO, Decimal("0.02"), 400),
    RegimeSpec("volatility_burst", 0.10, Decimal("5.0"), ZERO, ZERO, 80),
)


def _dec(x: float, places: int = 6) -> Decimal:
    return Decimal(repr(round(x, places)))


class SymbolGenerator:
    MIN_LEVELS = 40
    MAX_LEVELS = 160

    def __init__(self, exchange: Exchange, inst: Instrument, seed: int) -> None:
        self.exchange = exchange
        self.inst = inst
        self.rng = random.Random(f"kraken-sim-market-{seed}-{inst.symbol}")
        self.book = exchange.books[inst.symbol]
        self.fair = inst.initial_price
        self.anchor = inst.initial_price
        self.regime = REGIMES[0]
        self.direction = Decimal(1)
        self.regime_left = 0
        self.live: list[Order] = []
        self.steps = 0
        self.regimes_seen: dict[str, int] = {}

    # -- randomness turned into Decimal ---------------------------------------------------------------
    def _qty(self, scale: float) -> Decimal:
        typical = float(self.inst.typical_qty) * scale
        raw = typical * math.exp(self.rng.gauss(0.0, 0.9))
        qty = _dec(raw, self.inst.lot_decimals).quantize(self.inst.lot_step, rounding=ROUND_FLOOR)
        return max(qty, self.inst.ordermin)

    def _offset(self) -> Decimal:
        spacings = 0.3 + self.rng.expovariate(1 / 10.0)
        return self.inst.level_spacing * _dec(spacings, 4)

    def _on_tick(self, price: Decimal, side: Side) -> Decimal:
        tick = self.inst.tick_size
        rounding = ROUND_FLOOR if side is Side.BUY else ROUND_CEILING
        ticks = (price / tick).to_integral_value(rounding=rounding)
        return max(ticks, Decimal(1)) * tick

    # -- the price path -------------------------------------------------------------------------------
    def _advance_regime(self) -> None:
        if self.regime_left <= 0:
            self.regime = self.rng.choices(REGIMES, weights=[r.weight for r in REGIMES])[0]
            self.regime_left = max(10, int(self.rng.expovariate(1 / self.regime.mean_steps)))
            self.direction = Decimal(1) if self.rng.random() < 0.5 else Decimal(-1)
            self.regimes_seen[self.regime.name] = self.regimes_seen.get(self.regime.name, 0) + 1
        self.regime_left -= 1

    def _advance_fair(self) -> None:
        spacing = self.inst.level_spacing
        r = self.regime
        shock = _dec(self.rng.gauss(0.0, 1.0)) * r.vol * spacing
        move = shock + r.drift * self.direction * spacing + r.reversion * (self.anchor - self.fair)
        self.fair = max(self.fair + move, self.inst.tick_size * 100).quantize(FAIR_QUANTUM)
        self.anchor += (self.fair - self.anchor) * Decimal("0.002")

    # -- actions --------------------------------------------------------------------------------------
    def seed_book(self, levels: int = 60) -> None:
        for i in range(1, levels + 1):
            for side in (Side.BUY, Side.SELL):
                gap = self.inst.level_spacing * (Decimal(i) + _dec(self.rng.random(), 3))
                price = self.fair - gap if side is Side.BUY else self.fair + gap
                self._limit(side, self._on_tick(price, side), self._qty(1.0))

    def _limit(self, side: Side, price: Decimal, qty: Decimal) -> None:
        order = self.exchange.participant_limit(self.inst, side, price, qty)
        if order is not None and order.is_open:
            self.live.append(order)

    def _cancel_one(self) -> None:
        if not self.live:
            return
        picks = [self.rng.randrange(len(self.live)) for _ in range(3)]
        index = max(picks, key=lambda i: abs((self.live[i].limit_price or ZERO) - self.fair))
        order = self.live.pop(index)
        self.exchange.participant_cancel(order)

    def _trim(self, side: Side) -> None:
        book_side = self.book.side(side)
        worst = book_side.worst()
        if worst is None:
            return
        for order in list(book_side.levels[worst]):
            if order.owner is Owner.MARKET:
                self.exchange.participant_cancel(order)
                return

    def step(self) -> None:
        self.steps += 1
        self._advance_regime()
        self._advance_fair()
        if self.steps % 100 == 0:
            self.live = [o for o in self.live if o.is_open]
        with self.exchange.batch():
            self._act()

    def _act(self) -> None:
        if self.exchange.status in ("maintenance", "cancel_only"):
            return
        bids, asks = len(self.book.bids), len(self.book.asks)
        if bids < self.MIN_LEVELS or asks < self.MIN_LEVELS:
            side = Side.BUY if bids < asks else Side.SELL
            gap = self._offset() + self.inst.level_spacing * 3
            price = self.fair - gap if side is Side.BUY else self.fair + gap
            self._limit(side, self._on_tick(price, side), self._qty(1.0))
            return
        if bids > self.MAX_LEVELS or asks > self.MAX_LEVELS:
            self._trim(Side.BUY if bids > asks else Side.SELL)
            return
        r = self.rng.random()
        if r < 0.25:
            self._cancel_one()
        elif r < 0.37:
            bid, ask = self.book.best_bid(), self.book.best_ask()
            mid = (bid + ask) / 2 if bid is not None and ask is not None else self.fair
            lean = float((self.fair - mid) / (self.inst.level_spacing * 20))
            p_buy = 0.5 + max(-0.35, min(0.35, lean))
            side = Side.BUY if self.rng.random() < p_buy else Side.SELL
            self.exchange.participant_market(self.inst, side, self._qty(0.4))
        else:
            side = Side.BUY if self.rng.random() < 0.5 else Side.SELL
            offset = self._offset()
            price = self.fair - offset if side is Side.BUY else self.fair + offset
            self._limit(side, self._on_tick(price, side), self._qty(1.0))


@dataclass(frozen=True, slots=True)
class RecordedBook:
    kind: str  # snapshot | update
    symbol: str
    bids: list[tuple[Decimal, Decimal]]
    asks: list[tuple[Decimal, Decimal]]
    checksum: int | None


def load_recording(path: Path) -> list[RecordedBook]:
    """Read a v2 ``book`` JSON-lines recording (other channels and non-JSON lines are skipped)."""
    out: list[RecordedBook] = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            line = line.strip()
            if not line:
                continue
            try:
                msg = json.loads(line, parse_float=Decimal)
            except ValueError:
                log.warning("%s:%d: not JSON, skipped", path, lineno)
                continue
            if not isinstance(msg, dict) or msg.get("channel") != "book":
                continue
            for item in msg.get("data", []):
                out.append(
                    RecordedBook(
                        kind=str(msg.get("type")),
                        symbol=str(item["symbol"]),
                        bids=[(Decimal(lv["price"]), Decimal(lv["qty"])) for lv in item.get("bids", [])],
                        asks=[(Decimal(lv["price"]), Decimal(lv["qty"])) for lv in item.get("asks", [])],
                        checksum=item.get("checksum"),
                    )
                )
    if not out or out[0].kind != "snapshot":
        raise ValueError(f"{path}: a book recording must start with a snapshot")
    return out


class BookReplayer:
    def __init__(self, exchange: Exchange, recording: list[RecordedBook], loop: bool = True) -> None:
        self.exchange = exchange
        self.recording = recording
        self.loop = loop
        symbol = recording[0].symbol
        inst = exchange.registry.by_symbol(symbol)
        if inst is None:
            raise ValueError(f"the recording is for {symbol}, which is not a configured instrument")
        self.inst = inst
        self.depth = max(len(recording[0].bids), len(recording[0].asks))
        self.position = 0
        self._orders: dict[tuple[Side, Decimal], Order] = {}
        self.checksum_mismatches = 0

    @property
    def finished(self) -> bool:
        return not self.loop and self.position >= len(self.recording)

    def step(self) -> None:
        if self.position >= len(self.recording):
            if not self.loop:
                return
            self.position = 0
        msg = self.recording[self.position]
        self.position += 1
        if msg.symbol != self.inst.symbol:
            return
        with self.exchange.batch():
            if msg.kind == "snapshot":
                for order in list(self._orders.values()):
                    self.exchange.participant_cancel(order)
                self._orders.clear()
            for side, levels in ((Side.BUY, msg.bids), (Side.SELL, msg.asks)):
                for price, qty in levels:
                    self._apply(side, price, qty)
            self._truncate()
        book = self.exchange.books[self.inst.symbol]
        if msg.kind == "snapshot" and book.best_bid() is not None:
            self.exchange.marketdata[self.inst.symbol].set_reference_price(book.best_bid() or ZERO)
        if msg.checksum is not None:
            mine = book_checksum(book.asks.top(10), book.bids.top(10), self.inst.price_decimals, self.inst.lot_decimals)
            if mine != msg.checksum:
                self.checksum_mismatches += 1

    def _apply(self, side: Side, price: Decimal, qty: Decimal) -> None:
        key = (side, price)
        existing = self._orders.get(key)
        if existing is not None and not existing.is_open:
            existing = None
            del self._orders[key]
        if qty == 0:
            if existing is not None:
                self.exchange.participant_cancel(existing)
                del self._orders[key]
            return
        if existing is not None:
            self.exchange.participant_amend(existing, qty)
            return
        order = self.exchange.participant_limit(self.inst, side, price, qty)
        if order is not None and order.is_open:
            self._orders[key] = order

    def _truncate(self) -> None:
        for side in (Side.BUY, Side.SELL):
            mine = sorted((p for s, p in self._orders if s is side), reverse=side is Side.BUY)
            for price in mine[self.depth :]:
                order = self._orders.pop((side, price))
                self.exchange.participant_cancel(order)


class MarketDriver:
    """Runs the generator (every instrument) or the replay at ``rate`` steps per second."""

    def __init__(
        self,
        exchange: Exchange,
        mode: str,
        seed: int,
        rate: float,
        replay_file: Path | None = None,
        replay_loop: bool = True,
    ) -> None:
        self.exchange = exchange
        self.mode = mode
        self.rate = rate
        self.generators: dict[str, SymbolGenerator] = {}
        self.replayer: BookReplayer | None = None
        self.paused = False
        self._task: asyncio.Task[None] | None = None
        if mode == "generate":
            self.generators = {i.symbol: SymbolGenerator(exchange, i, seed) for i in exchange.registry}
        elif mode == "replay":
            assert replay_file is not None
            self.replayer = BookReplayer(exchange, load_recording(replay_file), loop=replay_loop)
        elif mode != "none":
            raise ValueError(f"unknown market mode {mode!r}")

    def prepare(
        self, warmup_steps: int, warmup_seconds: float, set_clock: Callable[[int | None], None], now_ns: int
    ) -> None:
        """Seed the books, then run ``warmup_steps`` steps back-dated evenly over the last ``warmup_seconds``,
        so that trades, the ticker and OHLC have history when clients arrive."""
        for gen in self.generators.values():
            gen.seed_book()
        if self.replayer is not None:
            self.replayer.step()  # the snapshot
        if not self.generators or warmup_steps <= 0:
            return
        span_ns = int(warmup_seconds * 1e9)
        try:
            for i in range(warmup_steps):
                set_clock(now_ns - span_ns + span_ns * i // warmup_steps)
                for gen in self.generators.values():
                    gen.step()
        finally:
            set_clock(None)

    def step(self, steps: int = 1, symbol: str | None = None) -> None:
        for _ in range(steps):
            if self.replayer is not None:
                self.replayer.step()
            for sym, gen in self.generators.items():
                if symbol is None or sym == symbol:
                    gen.step()

    def start(self) -> None:
        if self.mode != "none" and self.rate > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name="kraken-sim-market")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        start = time.monotonic()
        done = 0
        while True:
            due = int((time.monotonic() - start) * self.rate) - done
            if due > MAX_STEPS_PER_WAKE:  # fell behind: skip the backlog instead of bursting
                done += due - MAX_STEPS_PER_WAKE
                due = MAX_STEPS_PER_WAKE
            for _ in range(max(due, 0)):
                if not self.paused:
                    try:
                        self.step()
                    except Exception:
                        log.exception("market step failed")
                        raise
                done += 1
            wait = (done + 1) / self.rate - (time.monotonic() - start)
            await asyncio.sleep(max(wait, 0.001))

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"mode": self.mode, "rate": self.rate, "paused": self.paused}
        if self.generators:
            info["generators"] = {
                s: {
                    "fair": str(g.fair.quantize(g.inst.tick_size)),
                    "regime": g.regime.name,
                    "regimes_seen": dict(g.regimes_seen),
                    "steps": g.steps,
                }
                for s, g in self.generators.items()
            }
        if self.replayer is not None:
            info["replay"] = {
                "symbol": self.replayer.inst.symbol,
                "position": self.replayer.position,
                "messages": len(self.replayer.recording),
                "checksum_mismatches": self.replayer.checksum_mismatches,
            }
        return info
