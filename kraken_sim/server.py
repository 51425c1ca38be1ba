"""``Simulator``: the in-process API. Builds the exchange, binds the REST, public WS and private WS servers on
loopback (port 0 picks free ports), and runs the market.

    sim = Simulator(SimConfig(seed=7))
    await sim.start()
    ... sim.rest_url, sim.ws_url, sim.ws_auth_url, sim.faults.silence(3) ...
    await sim.stop()
"""

from __future__ import annotations

import logging
from types import TracebackType
from typing import Any

from aiohttp import web

from kraken_sim.admin import AdminApi
from kraken_sim.auth import Authenticator, TokenStore
from kraken_sim.config import SimConfig, check_config
from kraken_sim.exchange import Exchange
from kraken_sim.faults import Faults
from kraken_sim.flood import TradeFlood
from kraken_sim.ids import IdGenerator
from kraken_sim.instruments import InstrumentRegistry
from kraken_sim.market import MarketDriver
from kraken_sim.rest import RestApi
from kraken_sim.wire import Clock, fixed, rfc3339
from kraken_sim.ws import WsHub

log = logging.getLogger(__name__)


class Simulator:
    def __init__(self, config: SimConfig | None = None) -> None:
        self.config = config = config or SimConfig()
        plan = check_config(config)
        self.clock = Clock()
        self.ids = IdGenerator(config.seed)
        self.registry = InstrumentRegistry(config.instruments)
        self.exchange = Exchange(config, self.registry, self.clock, self.ids)
        self.faults = Faults(self.exchange)
        self.tokens = TokenStore(config.token_ttl)
        self.auth = Authenticator({config.api_key: config.api_secret})
        self.hub = WsHub(config, self.exchange, self.tokens, self.faults, self.ids, self.clock)
        self.exchange.sink = self.hub
        self.faults.hub = self.hub
        self.market = MarketDriver(
            self.exchange,
            config.market,
            config.seed,
            config.rate,
            replay_file=config.replay_file,
            replay_loop=config.replay_loop,
            scenario=plan.scenario,
            history_minutes=plan.history_minutes,
        )
        self.flood = TradeFlood(self.hub.publish_trade_text, self.registry)
        self.rest = RestApi(config, self.exchange, self.auth, self.tokens, self.faults, self.ids, self.clock)
        self.admin = AdminApi(
            config=config,
            clock=self.clock,
            exchange=self.exchange,
            faults=self.faults,
            market=self.market,
            hub=self.hub,
            flood=self.flood,
            state=self.state,
        )
        self._runners: list[web.AppRunner] = []
        self.rest_url = ""
        self.ws_url = ""
        self.ws_auth_url = ""
        self.rest_port = 0
        self.ws_port = 0
        self.ws_auth_port = 0
        self._started = False

    @property
    def admin_url(self) -> str:
        return f"{self.rest_url}/_sim"

    async def _serve(self, app: web.Application, port: int) -> int:
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, port, reuse_address=True)
        await site.start()
        self._runners.append(runner)
        address = runner.addresses[0]
        return int(address[1])

    async def start(self) -> None:
        if self._started:
            raise RuntimeError("simulator already started")
        self._started = True
        self.market.prepare(
            self.config.warmup_steps, self.config.warmup_seconds, self.clock.set_override, self.clock.now_ns()
        )
        rest_app = web.Application()
        self.rest.add_routes(rest_app)
        self.admin.add_routes(rest_app)
        try:
            self.rest_port = await self._serve(rest_app, self.config.rest_port)
            self.ws_port = await self._serve(self.hub.public_app(), self.config.ws_port)
            self.ws_auth_port = await self._serve(self.hub.private_app(), self.config.ws_auth_port)
        except OSError:
            await self._cleanup()
            raise
        host = self.config.host if ":" not in self.config.host else f"[{self.config.host}]"
        self.rest_url = f"http://{host}:{self.rest_port}"
        self.ws_url = f"ws://{host}:{self.ws_port}/v2"
        self.ws_auth_url = f"ws://{host}:{self.ws_auth_port}/v2"
        self.market.start()
        log.info("kraken_sim listening: rest %s ws %s ws-auth %s", self.rest_url, self.ws_url, self.ws_auth_url)

    async def stop(self) -> None:
        self.exchange.deadman.stop()
        self.flood.stop()
        await self.market.stop()
        await self.hub.close_all()
        await self._cleanup()

    async def _cleanup(self) -> None:
        for runner in reversed(self._runners):
            await runner.cleanup()
        self._runners.clear()

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    def endpoints(self) -> dict[str, Any]:
        return {
            "rest_url": self.rest_url,
            "ws_url": self.ws_url,
            "ws_auth_url": self.ws_auth_url,
            "admin_url": self.admin_url,
            "rest_port": self.rest_port,
            "ws_port": self.ws_port,
            "ws_auth_port": self.ws_auth_port,
            "api_key": self.config.api_key,
        }

    # -- the simulator's own record ---------------------------------------------------------------------
    def state(self, include_messages: bool = True) -> dict[str, Any]:
        ex = self.exchange
        account = ex.account
        orders = []
        for o in ex.orders.values():
            inst = o.instrument
            orders.append(
                {
                    "order_id": o.order_id,
                    "cl_ord_id": o.cl_ord_id,
                    "userref": o.userref,
                    "source": o.source,
                    "symbol": o.symbol,
                    "side": o.side.value,
                    "order_type": o.order_type.value,
                    "time_in_force": o.time_in_force.value,
                    "post_only": o.post_only,
                    "qty": fixed(o.qty, inst.lot_decimals),
                    "limit_price": fixed(o.limit_price, inst.price_decimals) if o.limit_price is not None else None,
                    "trigger_price": fixed(o.trigger_price, inst.price_decimals)
                    if o.trigger_price is not None
                    else None,
                    "trigger": o.trigger_reference if o.order_type.triggered else None,
                    "triggered": rfc3339(o.triggered_ns) if o.triggered_ns is not None else None,
                    "filled": fixed(o.filled, inst.lot_decimals),
                    "cost": str(o.cost),
                    "fee": fixed(o.fee, inst.quote.decimals),
                    "status": o.status.value,
                    "reason": o.reason,
                    "opened": rfc3339(o.opened_ns),
                    "closed": rfc3339(o.closed_ns) if o.closed_ns else None,
                    "trades": list(o.trade_txids),
                }
            )
        trades = [
            {
                "txid": t.txid,
                "order_id": t.order.order_id,
                "trade_id": t.trade_id,
                "symbol": t.order.symbol,
                "side": t.order.side.value,
                "price": str(t.price),
                "qty": str(t.qty),
                "cost": str(t.cost),
                "fee": str(t.fee),
                "maker": t.maker,
                "time": rfc3339(t.ts_ns),
                "ledger_ids": [e.ledger_id for e in t.ledger],
            }
            for t in account.trades
        ]
        ledger = [
            {
                "ledger_id": e.ledger_id,
                "ref_id": e.ref_id,
                "type": e.type,
                "asset": e.asset.code,
                "amount": fixed(e.amount, e.asset.decimals),
                "fee": fixed(e.fee, e.asset.decimals),
                "balance": fixed(e.balance, e.asset.decimals),
                "time": rfc3339(e.ts_ns),
            }
            for e in account.ledger
        ]
        balances = {
            a.code: {
                "balance": fixed(account.balances[a.code], a.decimals),
                "hold": fixed(account.held(a), a.decimals),
                "available": fixed(account.available(a), a.decimals),
            }
            for a in self.registry.assets
        }
        market = {}
        for symbol, book in ex.books.items():
            inst = book.instrument
            bid, ask = book.best_bid(), book.best_ask()
            md = ex.marketdata[symbol]
            market[symbol] = {
                "best_bid": fixed(bid, inst.price_decimals) if bid is not None else None,
                "best_ask": fixed(ask, inst.price_decimals) if ask is not None else None,
                "bid_levels": len(book.bids),
                "ask_levels": len(book.asks),
                "last_price": fixed(md.last_price, inst.price_decimals),
                "trades": md.total_trades,
            }
        state: dict[str, Any] = {
            "endpoints": self.endpoints(),
            "status": ex.status,
            "dead_man_switch": ex.deadman.describe(),
            "balances": balances,
            "orders": orders,
            "trades": trades,
            "ledger": ledger,
            "connections": self.hub.describe(),
            "faults": self.faults.describe(),
            "market": market,
            "driver": self.market.describe(),
            "recording": self.config.record_messages,
        }
        if include_messages and self.config.record_messages:
            state["market_messages"] = list(self.hub.recorded)
        return state
