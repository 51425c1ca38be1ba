"""Kraken REST client (httpx), async with a thread-backed sync facade for Django code.

Conventions:

* Public calls are ``GET /0/public/<Method>``; private calls ``POST /0/private/<Method>`` with
  ``application/x-www-form-urlencoded`` bodies by default, or JSON bodies (``json_body=True``). The exact body
  sent is what is signed (PROTOCOL.md §1.1, §1.2).
* Every call has a timeout; every request carries a User-Agent.
* The ``{"error": [...], "result": ...}`` envelope is checked: errors become the typed exceptions of
  :mod:`ingest.kraken.errors`, warnings are logged. JSON numbers are decoded exactly
  (``parse_float=Decimal``).
* Results: the named methods return the typed records of :mod:`ingest.kraken.rest_types` (Decimal for every
  money field, string or number on the wire). :meth:`KrakenRestClient.public` and
  :meth:`KrakenRestClient.private` return the raw ``result`` (strings left as Kraken sent them, JSON numbers
  as Decimal/int) for anything not wrapped here.
* Rate limits: before each private call the client WAITS on its model of the per-key REST counter; AddOrder
  and CancelOrder wait on the per-pair trading-engine counter (:mod:`ingest.kraken.ratelimit`). A rate-limit
  error from Kraken saturates the model.
* ``EAPI:Invalid nonce`` is retried once with a fresh nonce (the request was rejected before processing).
* AddOrder: a timeout or connection loss after the request may have been written, a non-200 status, an
  unreadable answer, or ``EGeneral:Internal error`` raises :class:`OrderOutcomeUnknown` with the
  ``cl_ord_id``/``userref``: query by client order id before resubmitting. A failure to connect (nothing sent)
  raises a retryable :class:`TransportError`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from functools import wraps
from typing import Any, Concatenate, ParamSpec, TypeVar
from urllib.parse import urlencode

import httpx

from ingest.kraken import constants
from ingest.kraken.auth import NonceSource, ProcessNonce, nonce_for_request, sign
from ingest.kraken.errors import (
    HttpStatusError,
    InternalError,
    InvalidNonce,
    InvalidResponse,
    KrakenError,
    MalformedMessage,
    OrderOutcomeUnknown,
    RateLimitExceeded,
    TradingRateLimitExceeded,
    TransportError,
    raise_for_errors,
)
from ingest.kraken.ratelimit import (
    RestCallCounter,
    Tier,
    TradingEngineLimiter,
    add_order_cost,
    cancel_order_cost,
)
from ingest.kraken.rest_types import (
    AddOrderResult,
    AssetPair,
    BalanceEx,
    CancelOrderResult,
    Depth,
    OHLCResult,
    OrderInfo,
    Page,
    PublicTrades,
    ServerTime,
    SystemStatus,
    TickerInfo,
    TradeInfo,
    WebSocketToken,
)
from ingest.kraken.wire import encode_json, parse_rfc3339_optional

__all__ = ["DeadManSwitch", "KrakenRestClient", "KrakenRestClientSync", "encode_params"]

logger = logging.getLogger(__name__)

_DECODER = json.JSONDecoder(parse_float=Decimal)
# Exceptions raised before any byte of the request left: always safe to retry.
_NOT_SENT = (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout, httpx.UnsupportedProtocol)
_TRACKED_ORDERS = 10_000


@dataclass(frozen=True, slots=True)
class DeadManSwitch:
    """The answer to ``CancelAllOrdersAfter`` (REST) / ``cancel_all_orders_after`` (WS v2): the exchange's
    time and when it will cancel everything (None: the switch is off)."""

    current_time: datetime | None
    trigger_time: datetime | None

    @classmethod
    def from_api(cls, result: Mapping[str, Any]) -> DeadManSwitch:
        if "currentTime" not in result or "triggerTime" not in result:
            raise InvalidResponse(f"CancelAllOrdersAfter: missing currentTime/triggerTime in {dict(result)!r}")
        try:
            current = parse_rfc3339_optional(result["currentTime"], "currentTime")
            trigger = parse_rfc3339_optional(result["triggerTime"], "triggerTime")
        except MalformedMessage as exc:
            raise InvalidResponse(f"CancelAllOrdersAfter: {exc}") from exc
        return cls(current, trigger)


def _form_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, float):
        raise TypeError("floats are not accepted in request parameters; use Decimal or str")
    if isinstance(value, list | tuple | set | frozenset):
        return ",".join(_form_value(v) for v in value)
    return str(value)


def encode_params(params: Mapping[str, Any], *, as_json: bool) -> str:
    """The request body for ``params`` (None values dropped): form-encoded or compact JSON.

    Decimals are written in plain notation (never an exponent); floats are refused."""
    clean = {k: v for k, v in params.items() if v is not None}
    if as_json:
        return encode_json(clean, decimals="string")
    return urlencode({k: _form_value(v) for k, v in clean.items()})


class KrakenRestClient:
    """Async Kraken REST client. Use as ``async with KrakenRestClient(...) as client:`` or call
    :meth:`aclose`."""

    def __init__(
        self,
        *,
        base_url: str = constants.REST_URL,
        api_key: str | None = None,
        api_secret: str | None = None,
        nonce_source: NonceSource | None = None,
        timeout: float = constants.DEFAULT_TIMEOUT_S,
        user_agent: str = constants.USER_AGENT,
        json_body: bool = False,
        otp: str | None = None,
        tier: Tier = Tier.INTERMEDIATE,
        history_cost: int = 2,
        rest_counter: RestCallCounter | None = None,
        engine_limiter: TradingEngineLimiter | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        if (api_key is None) != (api_secret is None):
            raise ValueError("give both api_key and api_secret, or neither")
        self._api_key = api_key
        self._api_secret = api_secret
        self._nonce = nonce_source or ProcessNonce()
        self._timeout = httpx.Timeout(timeout)
        self._json_body = json_body
        self._otp = otp
        self._clock = clock
        self.rest_counter = rest_counter or RestCallCounter(tier, history_cost=history_cost, clock=clock, sleep=sleep)
        self.engine_limiter = engine_limiter or TradingEngineLimiter(tier, clock=clock, sleep=sleep)
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/"),
            headers={"User-Agent": user_agent},
            timeout=self._timeout,
            transport=transport,
        )
        # txid / cl_ord_id -> (pair, placed_at) of orders placed here, to price cancels on the engine counter.
        self._placed: OrderedDict[str, tuple[str, float]] = OrderedDict()
        #: Counters for logs and metrics.
        self.stats: dict[str, int] = {
            "requests": 0,
            "errors": 0,
            "nonce_retries": 0,
            "outcome_unknown": 0,
            "untracked_cancels": 0,
        }

    async def __aenter__(self) -> KrakenRestClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # --- transport -------------------------------------------------------------------------------------

    def _parse_envelope(self, response: httpx.Response, method: str) -> Any:
        if response.status_code != 200:
            raise HttpStatusError(
                f"{method}: HTTP {response.status_code} {response.reason_phrase}",
                status_code=response.status_code,
            )
        try:
            payload = _DECODER.decode(response.text)
        except ValueError as exc:
            raise InvalidResponse(f"{method}: response is not JSON: {exc}") from exc
        if not isinstance(payload, dict) or not isinstance(payload.get("error"), list):
            raise InvalidResponse(f"{method}: response is not a Kraken envelope")
        try:
            warnings = raise_for_errors(payload["error"])
        except KrakenError:
            self.stats["errors"] += 1
            raise
        if warnings:
            logger.warning("kraken warnings", extra={"method": method, "warnings": warnings})
        if "result" not in payload:
            raise InvalidResponse(f"{method}: envelope without errors has no result")
        return payload["result"]

    async def public(self, method: str, params: Mapping[str, Any] | None = None) -> Any:
        """``GET /0/public/<method>``; returns the raw ``result``."""
        query = {k: _form_value(v) for k, v in (params or {}).items() if v is not None}
        self.stats["requests"] += 1
        try:
            response = await self._http.get(constants.PUBLIC_PATH + method, params=query, timeout=self._timeout)
        except httpx.TransportError as exc:
            raise TransportError(f"{method}: {type(exc).__name__}: {exc}") from exc
        return self._parse_envelope(response, method)

    async def private(
        self,
        method: str,
        params: Mapping[str, Any] | None = None,
        *,
        order_context: Mapping[str, Any] | None = None,
    ) -> Any:
        """``POST /0/private/<method>``, signed; returns the raw ``result``.

        ``order_context`` (cl_ord_id, userref, pair) marks an order-creating call: failures after the request
        may have reached Kraken raise :class:`OrderOutcomeUnknown` carrying it."""
        if self._api_key is None or self._api_secret is None:
            raise ValueError(f"{method} needs api_key and api_secret")
        cost = self.rest_counter.cost_of(method)
        if cost:
            await self.rest_counter.acquire(cost)
        path = constants.PRIVATE_PATH + method
        content_type = "application/json" if self._json_body else "application/x-www-form-urlencoded"
        timeout_s = self._timeout.read or constants.DEFAULT_TIMEOUT_S
        for attempt in range(2):
            # A shared nonce source holds the key's send slot until the request is written (`slot.trace`), so the
            # requests of every process on this key leave in nonce order.
            async with nonce_for_request(self._nonce, timeout_s=timeout_s) as slot:
                nonce = slot.nonce
                body = encode_params({"nonce": nonce, **(params or {}), "otp": self._otp}, as_json=self._json_body)
                headers = {
                    "API-Key": self._api_key,
                    "API-Sign": sign(path, nonce, body, self._api_secret),
                    "Content-Type": content_type,
                }
                self.stats["requests"] += 1
                try:
                    response = await self._http.post(
                        path,
                        content=body.encode(),
                        headers=headers,
                        timeout=self._timeout,
                        extensions={"trace": slot.trace},
                    )
                except _NOT_SENT as exc:
                    raise TransportError(f"{method}: not sent: {type(exc).__name__}: {exc}") from exc
                except asyncio.CancelledError:
                    if order_context is not None:
                        self.stats["outcome_unknown"] += 1
                        logger.error(
                            "order request cancelled in flight: outcome unknown",
                            extra={"method": method, **{k: v for k, v in order_context.items() if v is not None}},
                        )
                    raise
                except httpx.TransportError as exc:
                    if order_context is not None:
                        raise self._outcome_unknown(method, order_context, exc) from exc
                    raise TransportError(f"{method}: {type(exc).__name__}: {exc}") from exc
            try:
                return self._parse_envelope(response, method)
            except InvalidNonce:
                if attempt == 0:
                    self.stats["nonce_retries"] += 1
                    logger.warning("invalid nonce, retrying once with a fresh nonce", extra={"method": method})
                    continue
                raise
            except RateLimitExceeded as exc:
                if isinstance(exc, TradingRateLimitExceeded):
                    pair = order_context.get("pair") if order_context else None
                    if pair:
                        self.engine_limiter.counter(pair).saturate()
                else:
                    self.rest_counter.saturate()
                raise
            except (HttpStatusError, InvalidResponse, InternalError) as exc:
                if order_context is not None:
                    raise self._outcome_unknown(method, order_context, exc) from exc
                raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _outcome_unknown(self, method: str, context: Mapping[str, Any], exc: BaseException) -> OrderOutcomeUnknown:
        self.stats["outcome_unknown"] += 1
        logger.error(
            "order outcome unknown",
            extra={
                "method": method,
                "cause": repr(exc),
                **{k: v for k, v in context.items() if v is not None},
            },
        )
        return OrderOutcomeUnknown(
            f"{method}: outcome unknown after {type(exc).__name__}: {exc}; query by client order id",
            cl_ord_id=context.get("cl_ord_id"),
            userref=context.get("userref"),
            pair=context.get("pair"),
        )

    # --- public endpoints ------------------------------------------------------------------------------

    async def server_time(self) -> ServerTime:
        return ServerTime.from_api(await self.public("Time"))

    async def system_status(self) -> SystemStatus:
        return SystemStatus.from_api(await self.public("SystemStatus"))

    async def asset_pairs(self, pairs: Sequence[str] | None = None) -> dict[str, AssetPair]:
        """Keyed by the REST pair key (e.g. ``XXBTZUSD``)."""
        result = await self.public("AssetPairs", {"pair": list(pairs) if pairs else None})
        return {key: AssetPair.from_api(key, value) for key, value in _mapping(result, "AssetPairs").items()}

    async def ticker(self, pairs: Sequence[str]) -> dict[str, TickerInfo]:
        result = await self.public("Ticker", {"pair": list(pairs)})
        return {key: TickerInfo.from_api(key, value) for key, value in _mapping(result, "Ticker").items()}

    async def ohlc(self, pair: str, *, interval: int = 1, since: int | None = None) -> OHLCResult:
        if interval not in constants.OHLC_INTERVALS:
            raise ValueError(f"interval must be one of {constants.OHLC_INTERVALS}")
        return OHLCResult.from_api(
            _mapping(await self.public("OHLC", {"pair": pair, "interval": interval, "since": since}), "OHLC")
        )

    async def depth(self, pair: str, *, count: int | None = None) -> Depth:
        return Depth.from_api(_mapping(await self.public("Depth", {"pair": pair, "count": count}), "Depth"))

    async def trades(self, pair: str, *, since: str | int | None = None, count: int | None = None) -> PublicTrades:
        result = await self.public("Trades", {"pair": pair, "since": since, "count": count})
        return PublicTrades.from_api(_mapping(result, "Trades"))

    # --- private: account ------------------------------------------------------------------------------

    async def balance(self) -> dict[str, Decimal]:
        """Asset (legacy REST id, e.g. ``XXBT``) → balance."""
        result = _mapping(await self.private("Balance"), "Balance")
        try:
            return {asset: _to_decimal(value) for asset, value in result.items()}
        except (ValueError, ArithmeticError) as exc:
            raise InvalidResponse(f"Balance: {exc}") from exc

    async def balance_ex(self) -> dict[str, BalanceEx]:
        result = _mapping(await self.private("BalanceEx"), "BalanceEx")
        return {asset: BalanceEx.from_api(value) for asset, value in result.items()}

    async def websockets_token(self) -> WebSocketToken:
        return WebSocketToken.from_api(_mapping(await self.private("GetWebSocketsToken"), "token"))

    # --- private: orders -------------------------------------------------------------------------------

    async def open_orders(
        self, *, trades: bool = False, userref: int | None = None, cl_ord_id: str | None = None
    ) -> dict[str, OrderInfo]:
        result = _mapping(
            await self.private("OpenOrders", {"trades": trades or None, "userref": userref, "cl_ord_id": cl_ord_id}),
            "OpenOrders",
        )
        return {txid: OrderInfo.from_api(txid, o) for txid, o in _mapping(result.get("open"), "open").items()}

    async def closed_orders(
        self,
        *,
        ofs: int = 0,
        trades: bool = False,
        userref: int | None = None,
        cl_ord_id: str | None = None,
        start: int | str | None = None,
        end: int | str | None = None,
        closetime: str | None = None,
        without_count: bool = False,
    ) -> Page[OrderInfo]:
        """One page (up to 50, newest first) starting at result offset ``ofs``."""
        result = _mapping(
            await self.private(
                "ClosedOrders",
                {
                    "trades": trades or None,
                    "userref": userref,
                    "cl_ord_id": cl_ord_id,
                    "start": start,
                    "end": end,
                    "ofs": ofs or None,
                    "closetime": closetime,
                    "without_count": without_count or None,
                },
            ),
            "ClosedOrders",
        )
        orders = _mapping(result.get("closed"), "closed")
        return Page(tuple(OrderInfo.from_api(txid, o) for txid, o in orders.items()), _opt_count(result.get("count")))

    async def iter_closed_orders(self, **filters: Any) -> AsyncIterator[OrderInfo]:
        """Every closed order matching ``filters`` (see :meth:`closed_orders`), paginating with ``ofs``.

        Orders that close while paginating shift the pages; an order seen twice is yielded once."""
        async for order in _paginate(self.closed_orders, lambda o: o.txid, filters):
            yield order

    async def query_orders(
        self, txids: Sequence[str], *, trades: bool = False, userref: int | None = None
    ) -> dict[str, OrderInfo]:
        """Orders by txid, in batches of at most 50 txids per call."""
        out: dict[str, OrderInfo] = {}
        ids = list(dict.fromkeys(txids))
        for i in range(0, len(ids), constants.QUERY_ORDERS_BATCH):
            batch = ids[i : i + constants.QUERY_ORDERS_BATCH]
            result = _mapping(
                await self.private("QueryOrders", {"txid": batch, "trades": trades or None, "userref": userref}),
                "QueryOrders",
            )
            for txid, o in result.items():
                out[txid] = OrderInfo.from_api(txid, o)
        return out

    async def trades_history(
        self,
        *,
        ofs: int = 0,
        type: str | None = None,
        trades: bool = False,
        start: int | str | None = None,
        end: int | str | None = None,
        without_count: bool = False,
        consolidate_taker: bool | None = None,
    ) -> Page[TradeInfo]:
        """One page (up to 50, newest first) of the account's trades."""
        result = _mapping(
            await self.private(
                "TradesHistory",
                {
                    "type": type,
                    "trades": trades or None,
                    "start": start,
                    "end": end,
                    "ofs": ofs or None,
                    "without_count": without_count or None,
                    "consolidate_taker": consolidate_taker,
                },
            ),
            "TradesHistory",
        )
        rows = _mapping(result.get("trades"), "trades")
        return Page(tuple(TradeInfo.from_api(txid, t) for txid, t in rows.items()), _opt_count(result.get("count")))

    async def iter_trades_history(self, **filters: Any) -> AsyncIterator[TradeInfo]:
        """Every trade matching ``filters`` (see :meth:`trades_history`), paginating with ``ofs``."""
        async for trade in _paginate(self.trades_history, lambda t: t.txid, filters):
            yield trade

    async def add_order(
        self,
        *,
        pair: str,
        side: str,
        ordertype: str,
        volume: Decimal | str,
        price: Decimal | str | None = None,
        price2: Decimal | str | None = None,
        cl_ord_id: str | None = None,
        userref: int | None = None,
        oflags: Sequence[str] | None = None,
        timeinforce: str | None = None,
        starttm: str | int | None = None,
        expiretm: str | int | None = None,
        deadline: str | None = None,
        reduce_only: bool | None = None,
        stptype: str | None = None,
        validate: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> AddOrderResult:
        """Place an order. Waits on the pair's trading-engine counter (+1) first.

        Raises :class:`OrderOutcomeUnknown` when the order may or may not exist (see the module docstring)."""
        if side not in ("buy", "sell"):
            raise ValueError("side must be 'buy' or 'sell'")
        await self.engine_limiter.acquire(pair, add_order_cost())
        params: dict[str, Any] = {
            "pair": pair,
            "type": side,
            "ordertype": ordertype,
            "volume": volume,
            "price": price,
            "price2": price2,
            "cl_ord_id": cl_ord_id,
            "userref": userref,
            "oflags": list(oflags) if oflags else None,
            "timeinforce": timeinforce,
            "starttm": starttm,
            "expiretm": expiretm,
            "deadline": deadline,
            "reduce_only": reduce_only,
            "stptype": stptype,
            "validate": validate or None,
            **(extra or {}),
        }
        context = {"cl_ord_id": cl_ord_id, "userref": userref, "pair": pair}
        raw = await self.private("AddOrder", params, order_context=context)
        try:
            result = AddOrderResult.from_api(_mapping(raw, "AddOrder"), cl_ord_id=cl_ord_id, userref=userref)
        except InvalidResponse as exc:
            raise self._outcome_unknown("AddOrder", context, exc) from exc
        if not result.txids and not validate:
            raise self._outcome_unknown("AddOrder", context, InvalidResponse("success without a txid"))
        placed_at = self._clock()
        for ref in (*result.txids, cl_ord_id):
            if ref:
                self._track(ref, pair, placed_at)
        return result

    def _track(self, ref: str, pair: str, placed_at: float) -> None:
        self._placed[ref] = (pair, placed_at)
        self._placed.move_to_end(ref)
        while len(self._placed) > _TRACKED_ORDERS:
            self._placed.popitem(last=False)

    async def cancel_order(
        self,
        txid: str | int | None = None,
        *,
        cl_ord_id: str | None = None,
        pair: str | None = None,
        placed_at: float | None = None,
    ) -> CancelOrderResult:
        """Cancel by txid (or userref int) or by ``cl_ord_id``.

        The engine cost depends on the order's age: known for orders placed by this client, else from
        ``pair``/``placed_at`` (clock seconds); unknown age is charged as a new order. Without a pair the
        cancel is sent unmetered (counted in ``stats['untracked_cancels']``)."""
        if (txid is None) == (cl_ord_id is None):
            raise ValueError("give exactly one of txid or cl_ord_id")
        ref = str(txid) if txid is not None else str(cl_ord_id)
        tracked = self._placed.get(ref)
        if tracked is not None:
            pair = pair or tracked[0]
            placed_at = placed_at if placed_at is not None else tracked[1]
        if pair:
            age = None if placed_at is None else self._clock() - placed_at
            await self.engine_limiter.acquire(pair, cancel_order_cost(age))
        else:
            self.stats["untracked_cancels"] += 1
            logger.info("cancel without a known pair: engine counter not updated", extra={"ref": ref})
        result = CancelOrderResult.from_api(
            _mapping(await self.private("CancelOrder", {"txid": txid, "cl_ord_id": cl_ord_id}), "CancelOrder")
        )
        self._placed.pop(ref, None)
        return result

    async def cancel_all(self) -> int:
        """Cancel every open order; returns the count. (Per-order engine costs are not modelled.)"""
        result = _mapping(await self.private("CancelAll"), "CancelAll")
        try:
            return int(result["count"])
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidResponse(f"CancelAll: {exc}") from exc

    async def cancel_all_orders_after(self, timeout: int) -> DeadManSwitch:
        """Kraken's dead man's switch (``CancelAllOrdersAfter``): every open order of the account is canceled
        ``timeout`` seconds from now unless this is called again before; ``timeout=0`` disables it. Kraken
        recommends a call every 15-30 s with a 60 s timeout."""
        if isinstance(timeout, bool) or not isinstance(timeout, int) or timeout < 0:
            raise ValueError("timeout must be a non-negative int (seconds; 0 disables)")
        result = _mapping(await self.private("CancelAllOrdersAfter", {"timeout": timeout}), "CancelAllOrdersAfter")
        return DeadManSwitch.from_api(result)


# --- helpers -------------------------------------------------------------------------------------------

T = TypeVar("T")


def _mapping(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidResponse(f"{what}: expected an object, got {type(value).__name__}")
    return value


def _opt_count(value: Any) -> int | None:
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError) as exc:
        raise InvalidResponse(f"count: {value!r}") from exc


def _to_decimal(value: Any) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, str | int | Decimal):
        raise ValueError(f"{value!r} is not a number")
    result = Decimal(value)
    if not result.is_finite():
        raise ValueError(f"{value!r} is not finite")
    return result


async def _paginate(
    fetch: Callable[..., Awaitable[Page[T]]], key: Callable[[T], str], filters: Mapping[str, Any]
) -> AsyncIterator[T]:
    if "ofs" in filters:
        raise ValueError("the iterator manages ofs itself")
    ofs = 0
    seen: set[str] = set()
    while True:
        page = await fetch(ofs=ofs, **filters)
        if not page.items:
            return
        for item in page.items:
            k = key(item)
            if k not in seen:
                seen.add(k)
                yield item
        ofs += len(page.items)
        if page.count is not None and ofs >= page.count:
            return


# --- sync facade ---------------------------------------------------------------------------------------

P = ParamSpec("P")
R = TypeVar("R")


def _sync(
    method: Callable[Concatenate[KrakenRestClient, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[KrakenRestClientSync, P], R]:
    name = method.__name__

    @wraps(method)
    def call(self: KrakenRestClientSync, *args: P.args, **kwargs: P.kwargs) -> R:
        return self._run(getattr(self.client, name)(*args, **kwargs))

    return call


class KrakenRestClientSync:
    """Blocking facade for sync (Django) code: the async client runs on a private event loop in a daemon
    thread, so it works from any thread, with or without a running loop in the caller's thread (it blocks
    the caller). Same constructor arguments as :class:`KrakenRestClient`. Call :meth:`close` when done.

    Thread-safe: calls from several threads are scheduled on the one loop. NOT fork-safe: a forked child has
    the object but not the loop's thread, so a call there would wait forever for a loop that never runs;
    instead it raises :class:`RuntimeError` (:attr:`usable` says whether this process can use it). Create the
    client after the fork (e.g. Celery's ``worker_process_init``).
    """

    def __init__(self, **kwargs: Any) -> None:
        self._pid = os.getpid()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="kraken-rest", daemon=True)
        self._thread.start()
        self._closed = False

        async def build() -> KrakenRestClient:
            return KrakenRestClient(**kwargs)

        self.client: KrakenRestClient = self._run(build())

    @property
    def usable(self) -> bool:
        """Open, in the process that created it, with its loop thread running."""
        return not self._closed and self._pid == os.getpid() and self._thread.is_alive()

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        """The loop the async client lives on (to await its coroutines from another loop, through
        ``asyncio.run_coroutine_threadsafe``)."""
        return self._loop

    def _run(self, coro: Coroutine[Any, Any, R]) -> R:
        if not self.usable:
            coro.close()
            if self._closed:
                raise RuntimeError("KrakenRestClientSync is closed")
            raise RuntimeError(
                "KrakenRestClientSync used in a process other than the one that created it (fork) or after its "
                "loop thread died: create a new client in this process"
            )
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def __enter__(self) -> KrakenRestClientSync:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._closed:
            return
        if self._pid != os.getpid() or not self._thread.is_alive():
            self._closed = True  # the loop belongs to another process (or is gone): nothing to close here
            return
        self._run(self.client.aclose())
        self._closed = True
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    def _iterate(self, agen: AsyncIterator[T]) -> Iterator[T]:
        async def step() -> T:
            return await agen.__anext__()

        try:
            while True:
                try:
                    yield self._run(step())
                except StopAsyncIteration:
                    return
        finally:
            aclose = getattr(agen, "aclose", None)
            if aclose is not None and not self._closed:
                self._run(aclose())

    public = _sync(KrakenRestClient.public)
    private = _sync(KrakenRestClient.private)
    server_time = _sync(KrakenRestClient.server_time)
    system_status = _sync(KrakenRestClient.system_status)
    asset_pairs = _sync(KrakenRestClient.asset_pairs)
    ticker = _sync(KrakenRestClient.ticker)
    ohlc = _sync(KrakenRestClient.ohlc)
    depth = _sync(KrakenRestClient.depth)
    trades = _sync(KrakenRestClient.trades)
    balance = _sync(KrakenRestClient.balance)
    balance_ex = _sync(KrakenRestClient.balance_ex)
    websockets_token = _sync(KrakenRestClient.websockets_token)
    open_orders = _sync(KrakenRestClient.open_orders)
    closed_orders = _sync(KrakenRestClient.closed_orders)
    query_orders = _sync(KrakenRestClient.query_orders)
    trades_history = _sync(KrakenRestClient.trades_history)
    add_order = _sync(KrakenRestClient.add_order)
    cancel_order = _sync(KrakenRestClient.cancel_order)
    cancel_all = _sync(KrakenRestClient.cancel_all)
    cancel_all_orders_after = _sync(KrakenRestClient.cancel_all_orders_after)

    def iter_closed_orders(self, **filters: Any) -> Iterator[OrderInfo]:
        return self._iterate(self.client.iter_closed_orders(**filters))

    def iter_trades_history(self, **filters: Any) -> Iterator[TradeInfo]:
        return self._iterate(self.client.iter_trades_history(**filters))
