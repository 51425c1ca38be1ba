"""The simulator's own HTTP API on the REST port, under ``/_sim/`` (not part of Kraken's protocol).

- ``POST /_sim/faults`` ``{"fault": "<name>", ...arguments}``: inject a fault (see ``FAULTS``).
- ``DELETE /_sim/faults``: clear every fault. ``GET /_sim/faults``: the active faults.
- ``GET /_sim/state``: orders, trades, ledger, balances, connections and sequences, faults, market, and
  every public market message sent when recording is on (``?messages=0`` leaves them out).
- ``POST /_sim/market`` ``{"action": "pause"|"resume"|"step"|"place"|"cancel"|"burst"|"flood"|"flood_stop", ...}``:
  drive the market (``burst``: the replayed recording's frames, verbatim, ``repeat`` times, to depth-10 book
  subscribers; ``flood``: a synthetic trade tape at a fixed message rate, see ``kraken_sim.flood``).
- ``GET /_sim/scenario?horizon=15``: the market scenario (name, params, seed, origin, scheduled changes, per
  symbol the path's current minute, hidden regime state and last close) and its ground truth at that horizon.
- ``POST /_sim/dead_man_switch`` ``{"advance": seconds}``: let that much of the dead man's switch's countdown pass
  now (it fires in this call if the countdown runs out); ``GET`` the switch's state.
- ``GET /_sim/flood``: the trade flood's counters and its per-second record of what it sent (``?seconds=0``:
  counters only).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from aiohttp import web

from kraken_sim.config import SimConfig
from kraken_sim.engine import Owner, Side
from kraken_sim.exchange import Exchange
from kraken_sim.faults import FaultError, Faults
from kraken_sim.flood import TradeFlood
from kraken_sim.market import MarketDriver
from kraken_sim.scenarios import ground_truth
from kraken_sim.wire import Clock, dumps_bytes
from kraken_sim.ws import WsHub

log = logging.getLogger(__name__)

# fault name → (argument names accepted, converter per argument)
_INT: Callable[[Any], Any] = int
_FLOAT: Callable[[Any], Any] = float
_STR: Callable[[Any], Any] = str


def _BOOL(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if value in ("true", "1", 1):
        return True
    if value in ("false", "0", 0):
        return False
    raise ValueError(value)


def _OPT_INT(value: Any) -> int | None:
    return None if value is None else int(value)


def _FRAMES(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ValueError(value)
    return list(value)


FAULTS: dict[str, dict[str, Callable[[Any], Any]]] = {
    "drop_connections": {"scope": _STR, "connection_id": _OPT_INT, "mode": _STR},
    "silence": {"seconds": _FLOAT, "scope": _STR, "connection_id": _OPT_INT, "mode": _STR},
    "skip_sequence": {"channel": _STR, "count": _INT},
    "corrupt_checksum": {"symbol": _STR, "count": _INT},
    "system_status": {"status": _STR},
    "rest_errors": {"count": _INT, "error": _STR},
    "rest_delay": {"ms": _INT, "count": _OPT_INT, "phase": _STR},
    "withhold_executions": {"count": _INT, "consume_sequence": _BOOL},
    "withhold_market": {"channel": _STR, "symbol": _STR, "count": _INT},
    "inject_frames": {"frames": _FRAMES, "scope": _STR},
    "external_order": {
        "symbol": _STR,
        "side": _STR,
        "qty": _STR,
        "price": _STR,
        "order_type": _STR,
        "userref": _INT,
    },
    "external_fill": {"order_id": _STR, "qty": _STR},
    "balance_move": {"asset": _STR, "amount": _STR, "type": _STR},
    "fee_adjust": {"txid": _STR, "fee": _STR},
}


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps_bytes(data), status=status, content_type="application/json")


class AdminApi:
    """The ``/_sim`` routes over the simulator's parts; ``state`` is the simulator's own record
    (``Simulator.state``)."""

    def __init__(
        self,
        *,
        config: SimConfig,
        clock: Clock,
        exchange: Exchange,
        faults: Faults,
        market: MarketDriver,
        hub: WsHub,
        flood: TradeFlood,
        state: Callable[[bool], dict[str, Any]],
    ) -> None:
        self.config = config
        self.clock = clock
        self.exchange = exchange
        self.faults = faults
        self.market = market
        self.hub = hub
        self.flood = flood
        self.state = state

    def add_routes(self, app: web.Application) -> None:
        app.router.add_post("/_sim/faults", self.post_fault)
        app.router.add_delete("/_sim/faults", self.clear_faults)
        app.router.add_get("/_sim/faults", self.get_faults)
        app.router.add_get("/_sim/state", self.get_state)
        app.router.add_post("/_sim/market", self.post_market)
        app.router.add_get("/_sim/flood", self.get_flood)
        app.router.add_get("/_sim/scenario", self.get_scenario)
        app.router.add_post("/_sim/dead_man_switch", self.post_dead_man_switch)
        app.router.add_get("/_sim/dead_man_switch", self.get_dead_man_switch)

    async def _body(self, request: web.Request) -> dict[str, Any]:
        try:
            body = await request.json()
        except ValueError as exc:
            raise FaultError("the body must be a JSON object") from exc
        if not isinstance(body, dict):
            raise FaultError("the body must be a JSON object")
        return body

    async def post_fault(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            return _json({"ok": True, **self.apply_fault(body)})
        except FaultError as exc:
            return _json({"ok": False, "error": str(exc)}, status=400)

    def apply_fault(self, body: dict[str, Any]) -> dict[str, Any]:
        name = body.get("fault")
        spec = FAULTS.get(str(name))
        if spec is None:
            raise FaultError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        kwargs: dict[str, Any] = {}
        for key, value in body.items():
            if key == "fault":
                continue
            if key not in spec:
                raise FaultError(f"fault {name} does not take {key!r} (takes {', '.join(spec)})")
            try:
                kwargs[key] = spec[key](value)
            except (TypeError, ValueError) as exc:
                raise FaultError(f"bad value for {key}: {value!r}") from exc
        faults = self.faults
        log.info("fault requested: %s %s", name, kwargs)
        try:
            method = getattr(faults, str(name))
            result = method(**kwargs)
        except TypeError as exc:
            raise FaultError(str(exc)) from exc
        if name == "external_order":
            return {"order_id": result.order_id, "status": result.status.value}
        if name == "external_fill":
            return {
                "txid": result.txid,
                "order_id": result.order.order_id,
                "qty": str(result.qty),
                "price": str(result.price),
            }
        if name == "balance_move":
            return {"ledger_id": result.ledger_id, "asset": result.asset.code, "balance": str(result.balance)}
        if name == "fee_adjust":
            return {"txid": result.txid, "fee": str(result.fee)}
        if name in ("drop_connections", "skip_sequence", "inject_frames"):
            return {"affected": result}
        return {}

    async def clear_faults(self, request: web.Request) -> web.Response:
        self.faults.clear()
        return _json({"ok": True})

    async def get_faults(self, request: web.Request) -> web.Response:
        return _json(self.faults.describe())

    async def get_state(self, request: web.Request) -> web.Response:
        include = request.query.get("messages", "1") not in ("0", "false")
        return _json(self.state(include))

    async def get_scenario(self, request: web.Request) -> web.Response:
        try:
            horizon = int(request.query.get("horizon", "15"))
        except ValueError:
            horizon = 0
        if not 1 <= horizon <= 1440:
            return _json({"ok": False, "error": "horizon must be a whole number of bars in 1..1440"}, status=400)
        market = self.market
        info = market.scenario_state(self.clock.now_ns())
        if market.scenario is not None:
            # The first call per horizon runs a Monte Carlo (~0.2 s): off the event loop; cached afterwards.
            loop = asyncio.get_running_loop()
            info["ground_truth"] = await loop.run_in_executor(None, ground_truth, market.scenario, horizon)
        return _json(info)

    async def get_dead_man_switch(self, request: web.Request) -> web.Response:
        return _json(self.exchange.deadman.describe())

    async def post_dead_man_switch(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            if set(body) != {"advance"}:
                raise FaultError('the body must be {"advance": seconds}')
            value = body["advance"]
            try:
                if isinstance(value, bool):
                    raise InvalidOperation
                seconds = Decimal(str(value))
                if not seconds.is_finite() or seconds < 0:
                    raise InvalidOperation
            except InvalidOperation as exc:
                raise FaultError("advance must be a number of seconds >= 0") from exc
        except FaultError as exc:
            return _json({"ok": False, "error": str(exc)}, status=400)
        switch = self.exchange.deadman
        fired_now = switch.advance(seconds)
        log.info("dead man's switch advanced by %s s%s", seconds, " (fired)" if fired_now else "")
        return _json({"ok": True, "fired_now": fired_now, **switch.describe()})

    async def get_flood(self, request: web.Request) -> web.Response:
        include = request.query.get("seconds", "1") not in ("0", "false")
        return _json(self.flood.describe(seconds=include))

    async def post_market(self, request: web.Request) -> web.Response:
        try:
            body = await self._body(request)
            return _json({"ok": True, **self.market_action(body)})
        except FaultError as exc:
            return _json({"ok": False, "error": str(exc)}, status=400)

    def market_action(self, body: dict[str, Any]) -> dict[str, Any]:
        market = self.market
        exchange = self.exchange
        action = body.get("action")
        if action == "pause":
            market.paused = True
        elif action == "resume":
            market.paused = False
        elif action == "step":
            steps = body.get("steps", 1)
            if not isinstance(steps, int) or not 0 < steps <= 100_000:
                raise FaultError("steps must be an integer in 1..100000")
            market.step(steps, body.get("symbol"))
        elif action == "place":
            inst = exchange.registry.by_symbol(str(body.get("symbol")))
            if inst is None:
                raise FaultError("unknown symbol")
            try:
                side = Side(str(body.get("side")))
                price = Decimal(str(body.get("price")))
                qty = Decimal(str(body.get("qty")))
            except (ValueError, InvalidOperation) as exc:
                raise FaultError("place needs side buy|sell, price and qty") from exc
            if price <= 0 or qty <= 0 or price % inst.tick_size or qty != qty.quantize(inst.lot_step):
                raise FaultError("price must be a positive multiple of the tick, qty positive at lot precision")
            order = exchange.participant_limit(inst, side, price, qty)
            if order is None:
                raise FaultError("the market is not matching (system status) and the order would trade")
            return {"order_id": order.order_id, "status": order.status.value, "filled": str(order.filled)}
        elif action == "cancel":
            book_order = None
            for book in exchange.books.values():
                book_order = book.orders.get(str(body.get("order_id")))
                if book_order is not None:
                    break
            if book_order is None or book_order.owner is not Owner.MARKET:
                raise FaultError("no resting participant order with that id")
            exchange.participant_cancel(book_order)
        elif action == "burst":
            replay_file = self.config.replay_file
            if replay_file is None:
                raise FaultError("burst replays the recording given with --market replay:FILE")
            repeat = body.get("repeat", 1)
            if not isinstance(repeat, int) or not 0 < repeat <= 100_000:
                raise FaultError("repeat must be an integer in 1..100000")
            frames = [line for line in Path(replay_file).read_text().splitlines() if line.strip()]
            symbol = str(body.get("symbol", "BTC/USD"))
            return {"connections": self.hub.burst(symbol, frames, repeat), "frames": len(frames) * repeat}
        elif action == "flood":
            symbols = body.get("symbols", ["BTC/USD"])
            if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
                raise FaultError("symbols must be a list of v2 symbols")
            try:
                self.flood.start(
                    symbols,
                    rate=float(body.get("rate", 1000)),
                    seconds=float(body.get("seconds", 10)),
                    trades_per_message=int(body.get("trades_per_message", 1)),
                    seed=int(body.get("seed", self.config.seed)),
                    first_trade_id=int(body.get("first_trade_id", 1_000_000_000)),
                )
            except (TypeError, ValueError) as exc:
                raise FaultError(f"flood: {exc}") from exc
            return self.flood.describe(seconds=False)
        elif action == "flood_stop":
            self.flood.stop()
            return self.flood.describe(seconds=False)
        else:
            raise FaultError("action must be pause, resume, step, place, cancel, burst, flood or flood_stop")
        return {}
