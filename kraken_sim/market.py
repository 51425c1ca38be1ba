"""The other market participants: a seeded order-flow generator, or the replay of a recorded v2 book stream.

Generator: each instrument has a latent fair price that follows regimes (calm random walk, trend, mean
reversion, volatility burst). Participants quote limit orders around it, cancel stale quotes and send market
orders leaning toward it, so the book follows the path and trades print as it moves. All randomness comes from
one ``random.Random`` per instrument seeded from ``--seed``: the same seed gives the same order flow, book
messages and trades (wall-clock timestamps aside). Floats appear only as the random draws; prices and
quantities are Decimal from the moment they are formed.

Scenario markets (``kraken_sim.scenarios``): the fair price follows a per-minute return path whose
predictability is known. At each step, log(fair) moves along a Brownian bridge toward the current UTC minute's
target close, reaching it at ``HOLD_FRACTION`` of the minute and holding it until the minute ends. Takers trade
as in the history: 3-12 market orders a minute at uniform times, the last one when the hold starts (so every
minute prints a trade at its close); participant quotes that
the fair moved through are pulled and re-posted, so the book keeps up and trades print near the fair (a lagging
book would add autocorrelation to the returns: a fake edge). Before start, a back-dated history of the same path
is installed as public trades (``MarketDriver.prepare``).

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

import numpy as np

from kraken_sim.engine import Order, Owner, Side
from kraken_sim.exchange import Exchange
from kraken_sim.feeds import book_checksum
from kraken_sim.instruments import Instrument
from kraken_sim.scenarios import MINUTE_NS, ScenarioPath, ScenarioSpec, generate_history
from kraken_sim.wire import rfc3339

log = logging.getLogger(__name__)
ZERO = Decimal(0)
MAX_STEPS_PER_WAKE = 200
FAIR_QUANTUM = Decimal("0.000001")
HOLD_FRACTION = 0.9  # scenario markets: the fair reaches the minute's close at 54 s and holds it
MAX_REQUOTES = 20  # scenario markets: stale quotes re-posted per step and side, at most


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
                self._quote(side, gap)

    def _quote(self, side: Side, gap: Decimal) -> None:
        """A participant limit order ``gap`` from the fair (below it to buy, above it to sell)."""
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
            self._quote(side, gap)
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
            self._quote(side, offset)


class ScenarioGenerator(SymbolGenerator):
    """The order flow of ``SymbolGenerator`` around a fair price that follows a scenario's minute path."""

    def __init__(self, exchange: Exchange, inst: Instrument, seed: int, path: ScenarioPath) -> None:
        super().__init__(exchange, inst, seed)
        self.path = path
        self.clock = exchange.clock
        self.origin_minute = 0  # epoch minute of the scenario origin
        self.minute = 0  # current minute index (relative to the origin)
        self.x = path.anchor  # log fair
        self.tau = 0.0  # fraction of the current minute at which ``x`` was set
        self.held = False
        self.pulled = 0
        self.takers: list[float] = []  # fractions of the current minute at which a taker trades, soonest last
        self.fair = self._fair_decimal()

    def start_at(self, origin_ns: int) -> None:
        """Minute 0 starts at ``origin_ns`` (a whole minute) from the close of minute -1."""
        self.origin_minute = origin_ns // MINUTE_NS
        self.minute = 0
        self.x = self.path.log_close(-1)
        self.tau = 0.0
        self.held = False
        self._schedule_takers(after=(self.clock.now_ns() % MINUTE_NS) / MINUTE_NS)
        self.fair = self.anchor = self._fair_decimal()

    def _schedule_takers(self, after: float = 0.0) -> None:
        """As in the history: 3-12 trades a minute, the last one the print at the close (the hold), the others
        market orders at uniform times before it."""
        count = self.rng.randint(3, 12) - 1
        times = [self.rng.random() * HOLD_FRACTION for _ in range(count)]
        self.takers = sorted((t for t in times if t > after), reverse=True)

    def _taker(self) -> None:
        """A market order no larger than the opposite touch, so it prints at one price next to the fair."""
        side = Side.BUY if self.rng.random() < 0.5 else Side.SELL
        qty = self._qty(1.0)
        opposite = self.book.asks if side is Side.BUY else self.book.bids
        best = opposite.best()
        if best is None:
            return
        qty = min(qty, opposite.qty[best])
        if qty > 0:
            self.exchange.participant_market(self.inst, side, qty)

    def _fair_decimal(self) -> Decimal:
        return max(_dec(math.exp(self.x), 6), self.inst.tick_size * 100).quantize(FAIR_QUANTUM)

    def _advance_fair(self) -> None:
        now = self.clock.now_ns()
        epoch_minute = now // MINUTE_NS
        minute = epoch_minute - self.origin_minute
        tau = (now - epoch_minute * MINUTE_NS) / MINUTE_NS
        if minute > self.minute:  # the minutes before are over: the fair starts from the last one's close
            self.minute = minute
            self.x = self.path.log_close(minute - 1)
            self.tau = 0.0
            self.held = False
            self._schedule_takers()
        target = self.path.log_close(self.minute)
        if minute < self.minute or tau >= HOLD_FRACTION:
            self.x, self.tau = target, max(self.tau, tau)
        elif tau > self.tau:
            # Brownian bridge from (tau0, x) to (HOLD, target), the minute's variance spread over [0, HOLD]
            rest = HOLD_FRACTION - self.tau
            dt = tau - self.tau
            sigma = self.path.vol(self.minute)
            var = sigma * sigma / HOLD_FRACTION * dt * (HOLD_FRACTION - tau) / rest
            self.x += (target - self.x) * dt / rest + math.sqrt(max(var, 0.0)) * self.rng.gauss(0.0, 1.0)
            self.tau = tau
        self.fair = self._fair_decimal()

    def step(self) -> None:
        self.steps += 1
        self._advance_fair()
        if self.steps % 100 == 0:
            self.live = [o for o in self.live if o.is_open]
        with self.exchange.batch():
            if self.exchange.status not in ("maintenance", "cancel_only"):
                self._keep_up()
            self._act()

    def _pull(self, side: Side) -> int:
        """Cancel participant quotes the fair moved through (asks below it, bids above it)."""
        book_side = self.book.side(side)
        pulled = 0
        while True:
            best = book_side.best()
            if best is None or (best >= self.fair if side is Side.SELL else best <= self.fair):
                return pulled
            mine = [o for o in book_side.levels[best] if o.owner is Owner.MARKET]
            for order in mine:
                self.exchange.participant_cancel(order)
                pulled += 1
            if best in book_side.levels:  # only account orders left at this level: the flow will take them
                return pulled

    def _keep_up(self) -> None:
        spacing = self.inst.level_spacing
        pulled_by_side = {side: self._pull(side) for side in (Side.SELL, Side.BUY)}  # both before re-quoting
        for side, pulled in pulled_by_side.items():
            self.pulled += pulled
            for _ in range(min(pulled, MAX_REQUOTES)):
                offset = self._offset()
                self._quote(side, offset)
            best = self.book.side(side).best()
            gap = (self.fair - best if side is Side.BUY else best - self.fair) if best is not None else None
            if gap is None or gap > spacing * 2:
                offset = spacing * _dec(0.3 + self.rng.random(), 4)
                self._quote(side, offset)
        while self.takers and self.takers[-1] <= self.tau:
            self.takers.pop()
            self._taker()
        if self.tau >= HOLD_FRACTION and not self.held:
            self.held = True  # the print at the minute's close
            self._taker()

    def _act(self) -> None:
        """The participants' quoting and cancelling; takers trade on the minute's schedule (``_keep_up``), so
        the live tape has the history's trade count and sizes per minute."""
        if self.exchange.status in ("maintenance", "cancel_only"):
            return
        bids, asks = len(self.book.bids), len(self.book.asks)
        if bids < self.MIN_LEVELS or asks < self.MIN_LEVELS:
            side = Side.BUY if bids < asks else Side.SELL
            gap = self._offset() + self.inst.level_spacing * 3
            self._quote(side, gap)
        elif bids > self.MAX_LEVELS or asks > self.MAX_LEVELS:
            self._trim(Side.BUY if bids > asks else Side.SELL)
        elif self.rng.random() < 0.28:
            self._cancel_one()
        else:
            side = Side.BUY if self.rng.random() < 0.5 else Side.SELL
            offset = self._offset()
            self._quote(side, offset)

    def describe(self) -> dict[str, Any]:
        return {
            "fair": str(self.fair.quantize(self.inst.tick_size)),
            "minute": self.minute,
            "regime_state": self.path.state(self.minute),
            "steps": self.steps,
            "pulled_quotes": self.pulled,
        }


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
        scenario: ScenarioSpec | None = None,
        history_minutes: int = 0,
    ) -> None:
        self.exchange = exchange
        self.mode = mode
        self.rate = rate
        self.seed = seed
        self.generators: dict[str, SymbolGenerator] = {}
        self.replayer: BookReplayer | None = None
        self.paused = False
        self._task: asyncio.Task[None] | None = None
        self.scenario = scenario if scenario is not None and scenario.is_process else None
        self.paths: dict[str, ScenarioPath] = {}
        self.history_minutes = history_minutes
        self.origin_ns: int | None = None
        self.history_report: dict[str, Any] = {}
        if mode == "generate" and self.scenario is not None:
            for i in exchange.registry:
                path = ScenarioPath(self.scenario, seed, i.symbol, float(i.initial_price))
                self.paths[i.symbol] = path
                self.generators[i.symbol] = ScenarioGenerator(exchange, i, seed, path)
        elif mode == "generate":
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
        so that trades, the ticker and OHLC have history when clients arrive. A scenario market instead starts
        its path at ``now_ns`` floored to the minute (the origin) and installs its back-dated history."""
        if self.scenario is not None:
            self.origin_ns = now_ns - now_ns % MINUTE_NS
            for gen in self.generators.values():
                assert isinstance(gen, ScenarioGenerator)
                gen.start_at(self.origin_ns)
                gen.seed_book()
            if self.history_minutes > 0:
                self._install_history(self.origin_ns)
            return
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

    def _install_history(self, origin_ns: int) -> None:
        started = time.perf_counter()
        minutes = self.history_minutes
        begins = origin_ns + np.arange(-minutes, 0, dtype=np.int64) * MINUTE_NS
        for symbol, path in self.paths.items():
            inst = self.generators[symbol].inst
            lot_scale = 10**inst.lot_decimals
            hist = generate_history(
                path,
                minutes=minutes,
                origin_ns=origin_ns,
                tick=float(inst.tick_size),
                typical_qty=float(inst.typical_qty),
                lot_decimals=inst.lot_decimals,
                min_lots=int(inst.ordermin * lot_scale),
                seed=self.seed,
            )
            first_id = self.exchange.ids.skip_public_trade_ids(symbol, len(hist.ts_ns))
            self.exchange.marketdata[symbol].load_history(
                ts_ns=hist.ts_ns,
                price_ticks=hist.price_ticks,
                qty_lots=hist.qty_lots,
                buy=hist.buy,
                market=hist.market,
                minute_begin_ns=begins,
                minute_count=hist.minute_count,
                first_trade_id=first_id,
            )
            self.history_report[symbol] = {"minutes": minutes, "trades": len(hist.ts_ns)}
        elapsed = time.perf_counter() - started
        self.history_report["seconds"] = round(elapsed, 3)
        log.info("scenario history: %d minutes per symbol generated in %.2f s", minutes, elapsed)

    def scenario_state(self, now_ns: int) -> dict[str, Any]:
        """Name, params, seed, origin, change times and per symbol the path's current minute (no ground truth)."""
        if self.scenario is None:
            return {"name": "regimes", "params": {}, "seed": self.seed, "ground_truth": None}
        origin = self.origin_ns if self.origin_ns is not None else now_ns - now_ns % MINUTE_NS
        minute = now_ns // MINUTE_NS - origin // MINUTE_NS
        changes = []
        change = self.scenario.change_at
        if change is not None:
            changes.append({"minute": change, "time": rfc3339(origin + change * MINUTE_NS)})
        symbols = {}
        for symbol, path in self.paths.items():
            inst = self.generators[symbol].inst
            phase = self.scenario.phase_at(minute)
            symbols[symbol] = {
                "minute": minute,
                "minute_begin": rfc3339(origin + minute * MINUTE_NS),
                "regime_state": path.state(minute),
                "phase": phase.name,
                "drift": phase.drift,
                "vol": phase.vol,
                "last_close": str(path.close_price(minute - 1, inst.tick_size)),
                "current_target_close": str(path.close_price(minute, inst.tick_size)),
            }
        return {
            **self.scenario.describe(),
            "seed": self.seed,
            "origin": rfc3339(origin),
            "history_minutes": self.history_minutes,
            "history": self.history_report,
            "changes": changes,
            "symbols": symbols,
        }

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
        if self.scenario is not None:
            info["scenario"] = {**self.scenario.describe(), "origin_ns": self.origin_ns}
            info["generators"] = {
                s: g.describe() for s, g in self.generators.items() if isinstance(g, ScenarioGenerator)
            }
        elif self.generators:
            info["scenario"] = {"name": "regimes", "params": {}, "spec": "regimes"}
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
