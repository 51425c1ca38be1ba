"""Kraken's public REST endpoints (PROTOCOL.md §1.3): time and status, assets and pairs, and market data
(Ticker, OHLC, Depth, Trades, Spread), each answer keyed as Kraken keys it for the pair name asked for."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from kraken_sim import errors as E
from kraken_sim.config import SimConfig
from kraken_sim.engine import Side
from kraken_sim.errors import KrakenError
from kraken_sim.exchange import Exchange
from kraken_sim.marketdata import OHLC_INTERVALS
from kraken_sim.rest.params import Params, integer, listed, one_pair, pairs, time_bound
from kraken_sim.wire import NS, Clock, fixed, num_text, rfc1123, rfc3339_seconds, unix_token

MAX_DEPTH_COUNT = 500
MAX_TRADES_COUNT = 1000


class PublicEndpoints:
    def __init__(self, config: SimConfig, exchange: Exchange, clock: Clock) -> None:
        self.config = config
        self.exchange = exchange
        self.registry = exchange.registry
        self.clock = clock

    def methods(self) -> dict[str, Any]:
        return {
            "Time": self.time,
            "SystemStatus": self.system_status,
            "Assets": self.assets,
            "AssetPairs": self.asset_pairs,
            "Ticker": self.ticker,
            "OHLC": self.ohlc,
            "Depth": self.depth,
            "Trades": self.trades,
            "Spread": self.spread,
        }

    def time(self, params: Params) -> Any:
        now = self.clock.now_ns()
        return {"unixtime": now // NS, "rfc1123": rfc1123(now)}

    def system_status(self, params: Params) -> Any:
        return {"status": self.exchange.status, "timestamp": rfc3339_seconds(self.clock.now_ns())}

    def assets(self, params: Params) -> Any:
        names = listed(params, "asset")
        assets = self.registry.assets
        if names:
            assets = []
            for name in names:
                asset = self.registry.asset_by_any_name(name)
                if asset is None:
                    raise KrakenError("EQuery:Unknown asset")
                assets.append(asset)
        return {
            a.rest_id: {
                "aclass": "currency",
                "altname": a.altname,
                "decimals": a.decimals,
                "display_decimals": a.display_decimals,
                "status": "enabled",
            }
            for a in assets
        }

    def _pair_status(self) -> str:
        return self.exchange.status

    def asset_pairs(self, params: Params) -> Any:
        taker_pct = num_text(str((self.config.taker_fee * 100).normalize()))
        maker_pct = num_text(str((self.config.maker_fee * 100).normalize()))
        return {
            key: {
                "altname": i.altname,
                "wsname": i.wsname,
                "aclass_base": "currency",
                "base": i.base.rest_id,
                "aclass_quote": "currency",
                "quote": i.quote.rest_id,
                "lot": "unit",
                "cost_decimals": i.cost_decimals,
                "pair_decimals": i.price_decimals,
                "lot_decimals": i.lot_decimals,
                "lot_multiplier": 1,
                "leverage_buy": [],
                "leverage_sell": [],
                "fees": [[0, taker_pct]],
                "fees_maker": [[0, maker_pct]],
                "fee_volume_currency": "ZUSD",
                "margin_call": 80,
                "margin_stop": 40,
                "ordermin": str(i.ordermin),
                "costmin": str(i.costmin),
                "tick_size": str(i.tick_size),
                "status": self._pair_status(),
            }
            for key, i in pairs(self.registry, params)
        }

    def ticker(self, params: Params) -> Any:
        result = {}
        for key, inst in pairs(self.registry, params):
            book = self.exchange.books[inst.symbol]
            md = self.exchange.marketdata[inst.symbol]
            p, lot = inst.cost_decimals, inst.lot_decimals

            def level(price: Decimal | None, qty: Decimal, p: int = p) -> list[str]:
                if price is None:
                    return ["0", "0", "0.000"]
                return [fixed(price, p), str(max(1, int(qty))), fixed(qty, 3)]

            bid, ask = book.bids.best(), book.asks.best()
            last = md.last_price
            result[key] = {
                "a": level(ask, book.asks.qty[ask] if ask is not None else Decimal(0)),
                "b": level(bid, book.bids.qty[bid] if bid is not None else Decimal(0)),
                "c": [fixed(last, p), fixed(md.last_qty, lot)],
                "v": [fixed(md.today.volume, lot), fixed(md.rolling.volume, lot)],
                "p": [fixed(md.today.vwap(last), p), fixed(md.rolling.vwap(last), p)],
                "t": [md.today.count, md.rolling.count],
                "l": [fixed(md.today.low(last), p), fixed(md.rolling.low(last), p)],
                "h": [fixed(md.today.high(last), p), fixed(md.rolling.high(last), p)],
                "o": fixed(md.today_open, p),
            }
        return result

    def ohlc(self, params: Params) -> Any:
        key, inst = one_pair(self.registry, params)
        interval = integer(params, "interval", 1)
        if interval not in OHLC_INTERVALS:
            raise KrakenError(E.INVALID_ARGUMENTS)
        since = time_bound(params, "since")
        candles = list(self.exchange.marketdata[inst.symbol].candles[interval])
        pd, lot = inst.price_decimals, inst.lot_decimals
        rows = [
            [
                c.begin_ns // NS,
                fixed(c.open, pd),
                fixed(c.high, pd),
                fixed(c.low, pd),
                fixed(c.close, pd),
                fixed(c.vwap, pd),
                fixed(c.volume, lot),
                c.count,
            ]
            for c in candles
            if since is None or c.begin_ns // NS > since
        ]
        committed = candles[-2].begin_ns // NS if len(candles) >= 2 else (candles[-1].begin_ns // NS if candles else 0)
        return {key: rows, "last": committed}

    def depth(self, params: Params) -> Any:
        key, inst = one_pair(self.registry, params)
        count = integer(params, "count", 100) or 100
        count = max(1, min(count, MAX_DEPTH_COUNT))
        book = self.exchange.books[inst.symbol]
        p, lot = inst.cost_decimals, inst.lot_decimals

        def rows(side: Any) -> list[list[Any]]:
            out = []
            for price, qty in side.top(count):
                newest = max(o.opened_ns for o in side.levels[price])
                out.append([fixed(price, p), fixed(qty, lot), newest // NS])
            return out

        return {key: {"asks": rows(book.asks), "bids": rows(book.bids)}}

    def trades(self, params: Params) -> Any:
        key, inst = one_pair(self.registry, params)
        since = integer(params, "since")
        count = integer(params, "count", MAX_TRADES_COUNT) or MAX_TRADES_COUNT
        count = max(1, min(count, MAX_TRADES_COUNT))
        md = self.exchange.marketdata[inst.symbol]
        # Kraken's cursor is a nanosecond timestamp; small values are taken as seconds. With it: the trades after
        # it, oldest first, ``last`` being the cursor of the next page; without it: the most recent trades.
        since_ns = (since * NS if since < 10**12 else since) if since is not None else None
        archive = md.archive
        if archive is not None:  # a scenario's history and every trade since
            indices = archive.after(since_ns, count) if since_ns is not None else archive.latest(count)
            last_ns = (
                archive.ts[indices[-1]] if indices else (since_ns if since_ns is not None else self.clock.now_ns())
            )
            return {key: archive.rest_rows(indices, inst.cost_decimals), "last": str(last_ns)}
        tape = [t for t in md.tape if t.ts_ns > since_ns][:count] if since_ns is not None else list(md.tape)[-count:]
        p, lot = inst.cost_decimals, inst.lot_decimals
        rows = [
            [
                fixed(t.price, p),
                fixed(t.qty, lot),
                unix_token(t.ts_ns, 4),
                "b" if t.side is Side.BUY else "s",
                "m" if t.ord_type == "market" else "l",
                "",
                t.trade_id,
            ]
            for t in tape
        ]
        last = tape[-1].ts_ns if tape else (since_ns if since_ns is not None else self.clock.now_ns())
        return {key: rows, "last": str(last)}

    def spread(self, params: Params) -> Any:
        """The recent best bid/ask changes, oldest first: ``[time (int s), bid, ask]``; ``since`` (seconds) keeps
        the newer ones; ``last`` is the newest entry's time (the cursor for ``since``)."""
        key, inst = one_pair(self.registry, params)
        since = time_bound(params, "since")
        p = inst.cost_decimals
        rows = [
            [ts // NS, fixed(bid, p), fixed(ask, p)]
            for ts, bid, ask in self.exchange.marketdata[inst.symbol].spreads
            if since is None or ts // NS > since
        ]
        last = rows[-1][0] if rows else (int(since) if since is not None else self.clock.now_ns() // NS)
        return {key: rows, "last": last}
