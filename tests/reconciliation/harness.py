"""Scenario harness: the simulator (in-process, on its own event-loop thread, port 0) driven through seeded random
sequences of orders and fills, with known discrepancies injected; local books built ONLY from the execution
messages the simulator really sent on its private WebSocket (read by a minimal `websockets` client, parsed by
`ingest.kraken.messages`, applied with `execution_report_apply`), so withheld or disconnected messages are
genuinely missing locally.

Expected discrepancies come from an independent comparison of the simulator's own record (the truth) with the
local books before the run. Used by `tests/reconciliation/test_scenarios.py` and `bench/bench_reconciliation.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import random
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, TypeVar

import websockets

from ingest.kraken.errors import KrakenError
from ingest.kraken.messages import ChannelMessage, parse
from ingest.kraken.ratelimit import RestCallCounter, Tier
from ingest.kraken.rest import KrakenRestClientSync
from kraken_sim import TIERS, SimConfig, Simulator
from kraken_sim.engine import OrderStatus
from trading.accounts import balance_set
from trading.execution_reports import execution_report_apply
from trading.executions import ExecutionEvent
from trading.instruments import instrument_upsert
from trading.models import Balance, Fill, Instrument, Order
from trading.orders import order_create, order_mark_cancel_requested, order_mark_rejected, order_mark_submitted

R = TypeVar("R")
UNLIMITED = TIERS["pro"].__class__("test", Decimal(10**6), Decimal(1), Decimal(10**6), Decimal(1), 10_000)
REWARD_ASSETS = ("DOT.S", "ETH2.S", "USD.M", "ADA.S", "SOL.F", "XBT.M", "KSM.B")
INSTRUMENTS = {
    "BTC/USD": {"rest": "XXBTZUSD", "alt": "XBTUSD", "v1": "XBT/USD", "base": "BTC", "pd": 1, "mid": Decimal(60000)},
    "ETH/USD": {"rest": "XETHZUSD", "alt": "ETHUSD", "v1": "ETH/USD", "base": "ETH", "pd": 2, "mid": Decimal(3000)},
}


class SimLoop:
    """An event loop on a daemon thread hosting simulators and the private WebSocket reader."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="kraken-sim", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, R], timeout: float = 30) -> R:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call(self, fn: Callable[[], R]) -> R:
        async def wrapper() -> R:
            return fn()

        return self.run(wrapper())

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)


def harness_client(sim: Simulator, *, tier: Tier = Tier.PRO, **kwargs: Any) -> KrakenRestClientSync:
    counter = kwargs.pop("rest_counter", None) or RestCallCounter(tier, maximum=10**6, decay_per_s=10**6)
    return KrakenRestClientSync(
        base_url=sim.rest_url,
        api_key=sim.config.api_key,
        api_secret=sim.config.api_secret,
        tier=tier,
        rest_counter=counter,
        **kwargs,
    )


class PrivateFeed:
    """A minimal private WebSocket v2 client on the sim loop: subscribes to `executions`, keeps every message."""

    def __init__(self, sl: SimLoop, url: str, token: str) -> None:
        self.sl, self.url, self.token = sl, url, token
        self.conn: Any = None
        self.messages: list[str] = []
        self.pongs: dict[int, asyncio.Event] = {}
        self._reqs = itertools.count(1)
        self._reader: asyncio.Task[None] | None = None
        self.applied = 0

    def connect(self) -> None:
        self.sl.run(self._connect())

    async def _connect(self) -> None:
        self.conn = await websockets.connect(self.url, max_size=None, close_timeout=1)
        self._reader = asyncio.get_running_loop().create_task(self._read())
        req = next(self._reqs)
        done = asyncio.Event()
        self.pongs[req] = done
        params = {"channel": "executions", "token": self.token, "snap_orders": True, "snap_trades": False}
        await self.conn.send(json.dumps({"method": "subscribe", "params": params, "req_id": req}))
        await self._ping()

    async def _read(self) -> None:
        try:
            async for raw in self.conn:
                text = raw if isinstance(raw, str) else raw.decode()
                if '"pong"' in text:
                    req = json.loads(text).get("req_id")
                    if req in self.pongs:
                        self.pongs.pop(req).set()
                    continue
                if '"channel":"executions"' in text.replace(" ", "") and '"type"' in text:
                    self.messages.append(text)
        except websockets.ConnectionClosed:
            return

    async def _ping(self) -> None:
        req = next(self._reqs)
        done = asyncio.Event()
        self.pongs[req] = done
        await self.conn.send(json.dumps({"method": "ping", "req_id": req}))
        await asyncio.wait_for(done.wait(), 5)

    def barrier(self) -> None:
        """Everything the simulator sent before now has been received."""
        self.sl.run(self._ping())

    def wait_closed(self) -> None:
        async def closed() -> None:
            if self._reader is not None:
                await asyncio.wait_for(self._reader, 5)

        self.sl.run(closed())

    def close(self) -> None:
        async def close() -> None:
            if self.conn is not None:
                await self.conn.close()
            if self._reader is not None:
                await asyncio.wait_for(self._reader, 5)

        self.sl.run(close())

    def take(self) -> list[str]:
        new = self.messages[self.applied :]
        self.applied = len(self.messages)
        return new


def apply_messages(raws: list[str]) -> int:
    """Apply executions exactly as received: parse → ExecutionEvent.from_kraken → execution_report_apply."""
    count = 0
    for raw in raws:
        msg = parse(raw)
        assert isinstance(msg, ChannelMessage)
        assert msg.channel == "executions"
        for item in msg.items:
            execution_report_apply(event=ExecutionEvent.from_kraken(item))
            count += 1
    return count


def local_instruments() -> None:
    for symbol, spec in INSTRUMENTS.items():
        instrument_upsert(
            symbol=symbol,
            base=str(spec["base"]),
            quote="USD",
            rest_symbol=str(spec["rest"]),
            altname=str(spec["alt"]),
            v1_symbol=str(spec["v1"]),
            price_precision=int(str(spec["pd"])),
            qty_precision=8,
            tick_size=Decimal(1).scaleb(-int(str(spec["pd"]))),
            ordermin=Decimal("0.00005"),
            costmin=Decimal("0.5"),
        )


@dataclass
class Scenario:
    seed: int
    steps: int = 8
    injections: list[tuple[str, str]] = field(default_factory=list)  # (mode, action) applied
    notes: list[str] = field(default_factory=list)


class World:
    """One scenario's simulator, REST client, private feed and local books."""

    def __init__(self, sl: SimLoop, seed: int) -> None:
        self.sl = sl
        self.rng = random.Random(seed)
        self.seed = seed
        config = SimConfig(
            seed=seed,
            market="none",
            warmup_steps=0,
            rate=0.0,
            tier=UNLIMITED,
            enforce_rate_limits=False,
            balances={"USD": Decimal(1_000_000), "BTC": Decimal(20), "ETH": Decimal(200)},
        )
        self.sim = Simulator(config)
        sl.run(self.sim.start())
        self.client = harness_client(self.sim)
        self.feed = PrivateFeed(sl, self.sim.ws_auth_url, self.client.websockets_token().token)
        self.feed.connect()
        self.ours: list[str] = []  # cl_ord_ids of our orders
        self.n = itertools.count(1)
        local_instruments()
        for asset, info in self.client.balance_ex().items():
            code = {"XXBT": "BTC", "ZUSD": "USD", "XETH": "ETH"}.get(asset, asset)
            balance_set(asset=code, total=info.balance)
        self.liquidity()
        self.sync()

    def close(self) -> None:
        try:
            self.feed.close()
        finally:
            self.client.close()
            self.sl.run(self.sim.stop())

    # -- plumbing -----------------------------------------------------------------------------------------
    def sync(self) -> None:
        self.feed.barrier()
        apply_messages(self.feed.take())

    def fault(self, name: str, **kwargs: Any) -> Any:
        return self.sl.call(lambda: getattr(self.sim.faults, name)(**kwargs))

    def liquidity(self) -> None:
        from kraken_sim.engine import Side

        def place() -> None:
            ex = self.sim.exchange
            for symbol, spec in INSTRUMENTS.items():
                inst = ex.registry.by_symbol(symbol)
                assert inst is not None
                mid = spec["mid"]
                assert isinstance(mid, Decimal)
                step = mid / 6000
                for k in range(1, 11):
                    qty = Decimal("0.5") if symbol == "BTC/USD" else Decimal(5)
                    ex.participant_limit(inst, Side.SELL, inst.price_on_tick(mid + step * k), qty)
                    ex.participant_limit(inst, Side.BUY, inst.price_on_tick(mid - step * k), qty)

        self.sl.call(place)

    def sim_orders(self) -> list[Any]:
        return self.sl.call(lambda: list(self.sim.exchange.orders.values()))

    def open_ours(self) -> list[Any]:
        return [o for o in self.sim_orders() if o.is_open and o.source == "api" and o.limit_price is not None]

    # -- actions ------------------------------------------------------------------------------------------
    def _qty(self, symbol: str) -> Decimal:
        if symbol == "BTC/USD":
            return Decimal(self.rng.randint(1, 40)) / 1000
        return Decimal(self.rng.randint(5, 200)) / 100

    def our_order(self, *, marketable: bool) -> None:
        symbol = self.rng.choice(list(INSTRUMENTS))
        spec = INSTRUMENTS[symbol]
        side = self.rng.choice(["buy", "sell"])
        mid = spec["mid"]
        assert isinstance(mid, Decimal)
        pd = int(str(spec["pd"]))
        offset = mid * Decimal(self.rng.randint(20, 80)) / 10000
        crossing = offset if marketable else -offset
        price = (mid + crossing if side == "buy" else mid - crossing).quantize(Decimal(1).scaleb(-pd))
        qty = self._qty(symbol)
        cl = f"gf-{self.seed}-{next(self.n)}"
        instrument = Instrument.objects.get(symbol=symbol)
        use_market = marketable and self.rng.random() < 0.4
        order = order_create(
            client_order_id=cl,
            instrument=instrument,
            side=side,
            order_type="market" if use_market else "limit",
            quantity=qty,
            limit_price=None if use_market else price,
        )
        order_mark_submitted(order_id=order.pk)
        try:
            self.client.add_order(
                pair=str(spec["alt"]),
                side=side,
                ordertype="market" if use_market else "limit",
                volume=qty,
                price=None if use_market else price,
                cl_ord_id=cl,
            )
            self.ours.append(cl)
        except KrakenError as exc:
            order_mark_rejected(order_id=order.pk, reason=str(exc))

    def counterparty_fill(self) -> bool:
        resting = self.open_ours()
        if not resting:
            return False
        order = self.rng.choice(resting)
        partial = self.rng.random() < 0.5
        qty = (order.remaining / 2).quantize(Decimal("0.00000001")) if partial else None
        if qty is not None and qty <= 0:
            qty = None
        self.fault("external_fill", order_id=order.order_id, qty=qty)
        return True

    def cancel_ours(self) -> bool:
        resting = self.open_ours()
        if not resting:
            return False
        order = self.rng.choice(resting)
        local = Order.objects.filter(client_order_id=order.cl_ord_id).first()
        if local is not None and local.state in ("accepted", "partially_filled", "submitted"):
            order_mark_cancel_requested(order_id=local.pk, reason="scenario cancel")
        with contextlib.suppress(KrakenError):
            self.client.cancel_order(txid=order.order_id)
        return True

    def race(self) -> bool:
        """Canceled-then-filled: we ask for a cancel, the counterparty fills first (its execution never arrives),
        the cancel fails with Unknown order."""
        resting = self.open_ours()
        if not resting:
            return False
        order = self.rng.choice(resting)
        local = Order.objects.filter(client_order_id=order.cl_ord_id).first()
        if local is not None and local.state in ("accepted", "partially_filled", "submitted"):
            order_mark_cancel_requested(order_id=local.pk, reason="scenario cancel (race)")
        self.withheld(lambda: self.fault("external_fill", order_id=order.order_id))
        with contextlib.suppress(KrakenError):
            self.client.cancel_order(txid=order.order_id)
        return True

    def external_order(self) -> None:
        symbol = self.rng.choice(list(INSTRUMENTS))
        spec = INSTRUMENTS[symbol]
        side = self.rng.choice(["buy", "sell"])
        mid = spec["mid"]
        assert isinstance(mid, Decimal)
        pd = int(str(spec["pd"]))
        if self.rng.random() < 0.5:
            self.fault("external_order", symbol=symbol, side=side, qty=self._qty(symbol), order_type="market")
        else:
            offset = mid * Decimal(self.rng.randint(20, 80)) / 10000
            price = (mid - offset if side == "buy" else mid + offset).quantize(Decimal(1).scaleb(-pd))
            self.fault("external_order", symbol=symbol, side=side, qty=self._qty(symbol), price=price)

    def reward(self) -> None:
        asset = self.rng.choice(REWARD_ASSETS)
        amount = Decimal(self.rng.randint(1, 10_000)) / 1000
        self.fault("balance_move", asset=asset, amount=amount, type=self.rng.choice(["reward", "staking"]))

    def fee_difference(self) -> bool:
        trades = self.sl.call(lambda: list(self.sim.exchange.account.trades))
        if not trades:
            return False
        trade = self.rng.choice(trades)
        delta = Decimal(self.rng.randint(1, 500)) / 100
        new_fee = trade.fee + delta if self.rng.random() < 0.7 or trade.fee <= delta else trade.fee - delta
        self.fault("fee_adjust", txid=trade.txid, fee=new_fee)
        return True

    # -- injections ---------------------------------------------------------------------------------------
    def withheld(self, action: Callable[[], Any]) -> Any:
        self.sync()
        self.fault("withhold_executions", count=10**6)
        try:
            return action()
        finally:
            self.sl.call(lambda: setattr(self.sim.faults, "_withhold", 0))

    def disconnected(self, action: Callable[[], Any]) -> Any:
        self.sync()
        self.fault("drop_connections", scope="private")
        self.feed.wait_closed()
        try:
            return action()
        finally:
            self.feed = PrivateFeed(self.sl, self.sim.ws_auth_url, self.client.websockets_token().token)
            self.feed.connect()

    def play(self, scenario: Scenario) -> None:
        rng = self.rng
        actions: dict[str, Callable[[], Any]] = {
            "limit": lambda: self.our_order(marketable=False),
            "marketable": lambda: self.our_order(marketable=True),
            "counterparty_fill": self.counterparty_fill,
            "cancel": self.cancel_ours,
            "race": self.race,
            "external_order": self.external_order,
            "reward": self.reward,
            "fee_difference": self.fee_difference,
        }
        weights = {
            "limit": 4,
            "marketable": 3,
            "counterparty_fill": 3,
            "cancel": 2,
            "race": 1,
            "external_order": 2,
            "reward": 1,
            "fee_difference": 1,
        }
        names = list(weights)
        for _ in range(scenario.steps):
            name = rng.choices(names, weights=[weights[n] for n in names])[0]
            action = actions[name]
            roll = rng.random()
            mode = "withhold" if roll < 0.25 else "disconnect" if roll < 0.35 else "none"
            if name in ("reward", "fee_difference", "race"):
                mode = "none" if name != "race" else "race"
            if mode == "withhold":
                self.withheld(action)
            elif mode == "disconnect":
                self.disconnected(action)
            else:
                action()
            scenario.injections.append((mode, name))
            self.sync()


# --- the truth --------------------------------------------------------------------------------------------------

_LOCAL_CLASS = {
    "accepted": "open",
    "partially_filled": "open",
    "pending_cancel": "open",
    "filled": "filled",
    "canceled": "canceled",
    "expired": "canceled",
    "rejected": "rejected",
}


def _sim_class(status: OrderStatus) -> str:
    return {"pending": "open", "open": "open", "closed": "filled"}.get(status.value, "canceled")


def expected_discrepancies(world: World) -> set[tuple[str, str]]:
    """What a correct reconciliation must report (material ones: beyond tolerance), from the simulator's own
    record against the local books, written independently of the engine."""
    expected: set[tuple[str, str]] = set()
    trades = world.sl.call(lambda: {t.txid: t for t in world.sim.exchange.account.trades})
    fills = {f.exec_id: f for f in Fill.objects.all()}
    for o in world.sim_orders():
        local = Order.objects.filter(exchange_order_id=o.order_id).first()
        if local is None and o.cl_ord_id:
            local = Order.objects.filter(client_order_id=o.cl_ord_id).first()
        if local is None:
            expected.add(("unknown_exchange_order", o.order_id))
            continue
        filled = local.filled_qty
        for txid in o.trade_txids:
            fill = fills.get(txid)
            if fill is None:
                expected.add(("missing_fill", txid))
                filled += trades[txid].qty
            elif fill.fee != trades[txid].fee:
                expected.add(("fee_mismatch", txid))
        if filled >= local.quantity:
            local_class = "filled"
        elif local.state in ("created", "submitted", "unknown"):
            local_class = "open" if filled > 0 else "unconfirmed"
        else:
            local_class = _LOCAL_CLASS[local.state]
        if local_class != _sim_class(o.status):
            expected.add(("state_mismatch", o.order_id))
    balances = world.sl.call(lambda: dict(world.sim.exchange.account.balances))
    local_balances = dict(Balance.objects.values_list("asset", "total"))
    for asset, total in balances.items():
        if asset in REWARD_ASSETS and total != local_balances.get(asset, Decimal(0)):
            expected.add(("balance_mismatch", asset))
    return expected


def books_equal_exchange(world: World) -> list[str]:
    """Differences left between the local books and the simulator's record (empty: equal)."""
    problems: list[str] = []
    trades = world.sl.call(lambda: {t.txid: t for t in world.sim.exchange.account.trades})
    fills = {f.exec_id: f for f in Fill.objects.all()}
    for o in world.sim_orders():
        local = Order.objects.filter(exchange_order_id=o.order_id).first()
        if local is None:
            problems.append(f"order {o.order_id} unknown locally")
            continue
        if local.filled_qty != o.filled:
            problems.append(f"order {o.order_id} filled {local.filled_qty} != {o.filled}")
        if _LOCAL_CLASS.get(local.state, "other") != _sim_class(o.status):
            problems.append(f"order {o.order_id} state {local.state} != {o.status.value}")
        if local.fees != o.fee:
            problems.append(f"order {o.order_id} fees {local.fees} != {o.fee}")
    for txid, t in trades.items():
        fill = fills.get(txid)
        if fill is None:
            problems.append(f"trade {txid} missing locally")
        elif fill.fee != t.fee or fill.quantity != t.qty:
            problems.append(f"trade {txid} differs: {fill.quantity}/{fill.fee} != {t.qty}/{t.fee}")
    if set(fills) - set(trades):
        problems.append(f"local fills unknown to the exchange: {sorted(set(fills) - set(trades))}")
    balances = world.sl.call(lambda: dict(world.sim.exchange.account.balances))
    local_balances = dict(Balance.objects.values_list("asset", "total"))
    for asset in set(balances) | set(local_balances):
        if balances.get(asset, Decimal(0)) != local_balances.get(asset, Decimal(0)):
            problems.append(f"balance {asset} {local_balances.get(asset)} != {balances.get(asset)}")
    return problems
