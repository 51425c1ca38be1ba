"""Kraken's REST API (PROTOCOL.md §1): ``/0/public/<Method>`` and ``/0/private/<Method>``.

Responses use Kraken's envelope with HTTP 200: ``{"error":[],"result":…}`` on success, ``{"error":[…]}``
without ``result`` on failure. Money is written as strings at a fixed precision.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

from aiohttp import web

from kraken_sim import errors as E
from kraken_sim.auth import Authenticator, TokenStore, parse_body
from kraken_sim.config import SimConfig
from kraken_sim.errors import KrakenError
from kraken_sim.exchange import Exchange
from kraken_sim.faults import Faults
from kraken_sim.ids import IdGenerator
from kraken_sim.ratelimit import DecayingCounter
from kraken_sim.rest.account import AccountEndpoints
from kraken_sim.rest.params import Params
from kraken_sim.rest.public import PublicEndpoints
from kraken_sim.rest.trading import TradingEndpoints
from kraken_sim.wire import Clock, dumps_bytes

log = logging.getLogger(__name__)

HISTORY_METHODS = ("TradesHistory", "QueryTrades", "Ledgers", "QueryLedgers")
TRADING_METHODS = ("AddOrder", "CancelOrder", "CancelAll")


class RestApi:
    def __init__(
        self,
        config: SimConfig,
        exchange: Exchange,
        auth: Authenticator,
        tokens: TokenStore,
        faults: Faults,
        ids: IdGenerator,
        clock: Clock,
    ) -> None:
        self.config = config
        self.exchange = exchange
        self.registry = exchange.registry
        self.auth = auth
        self.tokens = tokens
        self.faults = faults
        self.ids = ids
        self.clock = clock
        self._counters: dict[str, DecayingCounter] = {}
        self._public: dict[str, Callable[[Params], Any]] = PublicEndpoints(config, exchange, clock).methods()
        self._private: dict[str, Callable[[Params], Any]] = {
            **AccountEndpoints(exchange).methods(),
            **TradingEndpoints(exchange).methods(),
            "GetWebSocketsToken": self.websockets_token,
        }

    def add_routes(self, app: web.Application) -> None:
        app.router.add_route("GET", "/0/public/{method}", self._handle_public)
        app.router.add_route("POST", "/0/public/{method}", self._handle_public)
        app.router.add_route("POST", "/0/private/{method}", self._handle_private)

    # -- plumbing -------------------------------------------------------------------------------------
    async def _respond(self, work: Callable[[], Awaitable[Any]], request_path: Callable[[], str]) -> web.Response:
        delay, phase = self.faults.take_rest_delay()
        if delay and phase == "before":
            await asyncio.sleep(delay)
        injected = self.faults.take_rest_error()
        if injected is not None:
            log.info("fault: answering %s", injected)
            body: dict[str, Any] = {"error": [injected]}
        else:
            try:
                body = {"error": [], "result": await work()}
            except KrakenError as exc:
                body = {"error": [exc.code]}
            except Exception:
                # A bug in the simulator must not look like a network failure to the client under test.
                log.exception("internal error answering %s", request_path())
                body = {"error": [E.INTERNAL_ERROR]}
        if delay and phase == "after":
            await asyncio.sleep(delay)
        return web.Response(body=dumps_bytes(body), content_type="application/json")

    async def _handle_public(self, request: web.Request) -> web.Response:
        async def work() -> Any:
            handler = self._public.get(request.match_info["method"])
            if handler is None:
                raise KrakenError(E.UNKNOWN_METHOD)
            params: Params = dict(request.query)
            if request.method == "POST" and request.can_read_body:
                params.update(parse_body(await request.read(), request.content_type))
            return handler(params)

        return await self._respond(work, lambda: request.path)

    async def _handle_private(self, request: web.Request) -> web.Response:
        async def work() -> Any:
            method = request.match_info["method"]
            handler = self._private.get(method)
            if handler is None:
                raise KrakenError(E.UNKNOWN_METHOD)
            body = await request.read()
            params = parse_body(body, request.content_type)
            key = self.auth.verify(
                uri_path=request.path,
                headers_key=request.headers.get("API-Key"),
                headers_sign=request.headers.get("API-Sign"),
                body=body,
                params=params,
            )
            self._charge(key, method)
            return handler(params)

        return await self._respond(work, lambda: request.path)

    def _charge(self, key: str, method: str) -> None:
        if not self.config.enforce_rate_limits or method in TRADING_METHODS:
            return
        counter = self._counters.get(key)
        if counter is None:
            tier = self.config.tier
            counter = self._counters[key] = DecayingCounter(tier.rest_max, tier.rest_decay)
        cost = Decimal(self.config.history_call_cost if method in HISTORY_METHODS else 1)
        if not counter.try_add(cost):
            raise KrakenError(E.API_RATE_LIMIT)

    def websockets_token(self, params: Params) -> Any:
        token = self.ids.ws_token()
        self.tokens.issue(token)
        return {"token": token, "expires": int(self.config.token_ttl)}
