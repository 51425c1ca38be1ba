"""Fault injection: the Python API. ``admin.py`` exposes the same operations over HTTP.

Every fault is one-shot or time-boxed and applies from the moment it is set; ``clear()`` removes them all.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any, Protocol

from kraken_sim.accounts import AccountTrade, LedgerEntry, quantize
from kraken_sim.engine import Order, OrderType, Side, TimeInForce
from kraken_sim.errors import KrakenError
from kraken_sim.exchange import Exchange, OrderRequest
from kraken_sim.instruments import Asset
from kraken_sim.messages import PRIVATE_CHANNELS

log = logging.getLogger(__name__)

SCOPES = ("all", "public", "private")
SILENCE_MODES = ("hold", "drop")
BALANCE_MOVE_TYPES = ("reward", "staking", "deposit", "withdrawal", "transfer", "adjustment", "credit")
# Assets that appear only through balance moves (staking and rewards: ``DOT.S``, ``USD.M``, ``ETH2.S``...): no pair
# trades them, so they get a plain name and Kraken's usual 10 (crypto) or 4 (fiat, ``.M`` on USD/EUR) decimals.
_FIAT = ("USD", "EUR", "GBP", "CAD", "JPY", "CHF", "AUD")


class FaultError(ValueError):
    """A fault request that cannot be applied (bad arguments, unknown order)."""


class Peer(Protocol):
    """A WebSocket connection, as a silence sees it."""

    @property
    def connection_id(self) -> int: ...

    @property
    def private(self) -> bool: ...


class FaultTarget(Protocol):
    """What the WebSocket hub offers fault injection (the hub consults the faults as it sends; the faults act on
    the hub through this, so neither module imports the other)."""

    def drop(self, *, scope: str, connection_id: int | None, mode: str) -> int: ...

    def skip_sequence(self, channel: str, count: int) -> int: ...

    def send_raw(self, *, scope: str, frames: list[str]) -> int: ...

    def clear_skips(self) -> None: ...


@dataclass(slots=True)
class _Silence:
    scope: str
    connection_id: int | None
    until: float
    mode: str


class Faults:
    def __init__(self, exchange: Exchange, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self.exchange = exchange
        self.hub: FaultTarget | None = None  # set once the hub exists (it takes the faults)
        self._rest_errors: deque[str] = deque()
        self._rest_delay_ms = 0
        self._rest_delay_count: int | None = None
        self._rest_delay_phase = "after"
        self._silences: list[_Silence] = []
        self._corrupt: dict[str, int] = {}
        self._withhold = 0
        self._withhold_consume = False
        self._withhold_market: dict[tuple[str, str], int] = {}

    # -- REST -----------------------------------------------------------------------------------------
    def rest_errors(self, count: int = 1, error: str = "EService:Unavailable") -> None:
        """The next ``count`` REST calls (public or private) answer ``{"error":[error]}`` and do nothing."""
        if count < 1 or not error.startswith(("E", "W")) or ":" not in error:
            raise FaultError("rest_errors needs count >= 1 and a Kraken error string like EService:Unavailable")
        self._rest_errors.extend([error] * count)

    def take_rest_error(self) -> str | None:
        return self._rest_errors.popleft() if self._rest_errors else None

    def rest_delay(self, ms: int, count: int | None = None, phase: str = "after") -> None:
        """Delay REST responses by ``ms``; ``phase`` ``after`` applies the call first then waits (the effect
        is visible before the response arrives), ``before`` waits first. ``count`` None: until cleared."""
        if ms < 0 or (count is not None and count < 1) or phase not in ("before", "after"):
            raise FaultError("rest_delay needs ms >= 0, count >= 1 or null, phase before|after")
        self._rest_delay_ms = ms
        self._rest_delay_count = count
        self._rest_delay_phase = phase

    def take_rest_delay(self) -> tuple[float, str]:
        if self._rest_delay_ms <= 0:
            return 0.0, "after"
        if self._rest_delay_count is not None:
            self._rest_delay_count -= 1
            if self._rest_delay_count <= 0:
                ms, phase = self._rest_delay_ms, self._rest_delay_phase
                self._rest_delay_ms, self._rest_delay_count = 0, None
                return ms / 1000, phase
        return self._rest_delay_ms / 1000, self._rest_delay_phase

    # -- WebSocket ------------------------------------------------------------------------------------
    def drop_connections(self, scope: str = "all", connection_id: int | None = None, mode: str = "abort") -> int:
        """Drop WebSocket connections: ``abort`` cuts the TCP connection (no close frame), ``close`` sends a
        close frame (1001). Returns how many were dropped."""
        if scope not in SCOPES or mode not in ("abort", "close"):
            raise FaultError("drop_connections needs scope all|public|private and mode abort|close")
        assert self.hub is not None
        return self.hub.drop(scope=scope, connection_id=connection_id, mode=mode)

    def silence(self, seconds: float, scope: str = "all", connection_id: int | None = None, mode: str = "hold") -> None:
        """Send nothing (not even heartbeats) for ``seconds``. ``hold`` delivers the withheld messages
        afterwards, ``drop`` loses them."""
        if seconds <= 0 or scope not in SCOPES or mode not in SILENCE_MODES:
            raise FaultError("silence needs seconds > 0, scope all|public|private, mode hold|drop")
        self._silences.append(_Silence(scope, connection_id, self._clock() + seconds, mode))

    def silence_state(self, conn: Peer) -> tuple[float, str]:
        """(seconds left, mode) of the longest silence that applies to ``conn``; (0, "") if none."""
        now = self._clock()
        self._silences = [s for s in self._silences if s.until > now]
        best = (0.0, "")
        for s in self._silences:
            if s.connection_id is not None and s.connection_id != conn.connection_id:
                continue
            if s.scope == "public" and conn.private or s.scope == "private" and not conn.private:
                continue
            if s.until - now > best[0]:
                best = (s.until - now, s.mode)
        return best

    def skip_sequence(self, channel: str = "executions", count: int = 1) -> int:
        """The next message on ``channel`` (every current subscription) skips ``count`` sequence numbers.
        Returns the number of subscriptions affected."""
        if channel not in PRIVATE_CHANNELS or count < 1:
            raise FaultError("skip_sequence needs channel executions|balances and count >= 1")
        assert self.hub is not None
        return self.hub.skip_sequence(channel, count)

    def corrupt_checksum(self, symbol: str, count: int = 1) -> None:
        """The next ``count`` book updates for ``symbol`` carry a wrong checksum (the book data is right)."""
        if count < 1:
            raise FaultError("corrupt_checksum needs count >= 1")
        if self.exchange.registry.by_symbol(symbol) is None:
            raise FaultError(f"unknown symbol {symbol}")
        self._corrupt[symbol] = self._corrupt.get(symbol, 0) + count

    def take_corrupt_checksum(self, symbol: str) -> bool:
        left = self._corrupt.get(symbol, 0)
        if left <= 0:
            return False
        self._corrupt[symbol] = left - 1
        return True

    def withhold_executions(self, count: int = 1, consume_sequence: bool = False) -> None:
        """Do not send the next ``count`` ``executions`` messages for the account (the engine applies them;
        REST shows the truth). With ``consume_sequence`` the sequence still advances, so a client sees a gap;
        without it the loss is invisible on the socket."""
        if count < 1:
            raise FaultError("withhold_executions needs count >= 1")
        self._withhold += count
        self._withhold_consume = consume_sequence

    def take_withhold(self) -> tuple[bool, bool]:
        if self._withhold <= 0:
            return False, False
        self._withhold -= 1
        return True, self._withhold_consume

    # -- exchange -------------------------------------------------------------------------------------
    def inject_frames(self, frames: list[str], scope: str = "public") -> int:
        """Send raw text frames as they are (malformed JSON, unknown channels, wrong shapes) to every connection in
        ``scope``, between the regular messages. Returns how many connections got them."""
        if scope not in SCOPES or not frames or not all(isinstance(f, str) for f in frames):
            raise FaultError("inject_frames needs a non-empty list of text frames and scope all|public|private")
        assert self.hub is not None
        return self.hub.send_raw(scope=scope, frames=frames)

    def withhold_market(self, channel: str, symbol: str, count: int = 1) -> None:
        """Do not send the next ``count`` public ``channel`` (``trade`` or ``ohlc``) messages for ``symbol``: the
        market moves on (REST Trades and OHLC show the truth), only the socket misses them (and they are not in
        the recorded messages, which hold what was sent)."""
        if channel not in ("trade", "ohlc") or count < 1:
            raise FaultError("withhold_market needs channel trade|ohlc and count >= 1")
        if self.exchange.registry.by_symbol(symbol) is None:
            raise FaultError(f"unknown symbol {symbol}")
        key = (channel, symbol)
        self._withhold_market[key] = self._withhold_market.get(key, 0) + count

    def take_withhold_market(self, channel: str, symbol: str) -> bool:
        left = self._withhold_market.get((channel, symbol), 0)
        if left <= 0:
            return False
        self._withhold_market[(channel, symbol)] = left - 1
        return True

    def system_status(self, status: str) -> None:
        """online | maintenance | cancel_only | post_only: pushed on ``status`` and enforced."""
        try:
            self.exchange.set_status(status)
        except ValueError as exc:
            raise FaultError(str(exc)) from exc

    def external_order(
        self,
        symbol: str,
        side: str,
        qty: Decimal | str,
        price: Decimal | str | None = None,
        order_type: str = "limit",
        userref: int = 0,
    ) -> Order:
        """An order on the account placed outside our system (as from Kraken's website)."""
        inst = self.exchange.registry.by_symbol(symbol) or self.exchange.registry.by_rest_name(symbol)
        if inst is None:
            raise FaultError(f"unknown symbol {symbol}")
        try:
            req = OrderRequest(
                instrument=inst,
                side=Side(side),
                order_type=OrderType(order_type),
                qty=Decimal(str(qty)),
                limit_price=Decimal(str(price)) if price is not None else None,
                time_in_force=TimeInForce.GTC,
                userref=int(userref),
            )
            return self.exchange.place_order(req, source="external")
        except KrakenError as exc:
            raise FaultError(exc.code) from exc
        except (ValueError, ArithmeticError) as exc:
            raise FaultError(f"invalid external order: {exc}") from exc

    def external_fill(self, order_id: str, qty: Decimal | str | None = None) -> AccountTrade:
        """A counterparty fills (part of) one of the account's resting orders, out of queue order."""
        try:
            return self.exchange.external_fill(order_id, Decimal(str(qty)) if qty is not None else None)
        except KrakenError as exc:
            raise FaultError(exc.code) from exc
        except ArithmeticError as exc:
            raise FaultError(f"invalid qty: {exc}") from exc

    def balance_move(self, asset: str, amount: Decimal | str, type: str = "reward") -> LedgerEntry:
        """A balance change outside trading (staking or opt-in rewards, a deposit, an adjustment): one ledger
        entry of ``type``, sent on ``balances``; REST Balance/BalanceEx show it. An asset the account does not
        hold yet (``DOT.S``, ``USD.M``) is added, named as given (REST id, altname and v2 code alike)."""
        if type not in BALANCE_MOVE_TYPES:
            raise FaultError(f"balance_move type must be one of {', '.join(BALANCE_MOVE_TYPES)}")
        code = asset.strip().upper()
        if not code or len(code) > 16:
            raise FaultError("balance_move needs an asset name")
        try:
            delta = Decimal(str(amount))
        except ArithmeticError as exc:
            raise FaultError(f"invalid amount: {exc}") from exc
        if not delta.is_finite() or delta == 0:
            raise FaultError("balance_move needs a non-zero amount")
        registry, account = self.exchange.registry, self.exchange.account
        known = registry.asset_by_any_name(code)
        if known is None:
            decimals = 4 if code.split(".")[0] in _FIAT else 10
            known = Asset(code, code, code, decimals, min(decimals, 5))
            registry.add_asset(known)  # the registry lists every asset the account holds
            account.balances[code] = Decimal(0)
        delta = quantize(delta, known.decimals)
        if account.balances[known.code] + delta < 0:
            raise FaultError(f"balance_move would make {known.code} negative")
        account.balances[known.code] += delta
        entry = LedgerEntry(
            self.exchange.ids.ledger_id(),
            self.exchange.ids.ledger_id(),
            self.exchange.clock.now_ns(),
            type,
            known,
            delta,
            Decimal(0),
            account.balances[known.code],
        )
        account.ledger.append(entry)
        self.exchange.sink.ledger(entry)
        return entry

    def fee_adjust(self, txid: str, fee: Decimal | str) -> AccountTrade:
        """The exchange charges a different fee for a past trade than it reported at execution (a fee rebate or
        correction): TradesHistory, QueryTrades and the order's fee show the new fee, the quote balance moves by
        the difference with an ``adjustment`` ledger entry. The execution already sent is not repeated."""
        account = self.exchange.account
        index = next((i for i, t in enumerate(account.trades) if t.txid == txid), None)
        if index is None:
            raise FaultError(f"unknown trade {txid}")
        trade = account.trades[index]
        quote = trade.order.instrument.quote
        try:
            new_fee = quantize(Decimal(str(fee)), quote.decimals)
        except ArithmeticError as exc:
            raise FaultError(f"invalid fee: {exc}") from exc
        if not new_fee.is_finite() or new_fee < 0:
            raise FaultError("fee_adjust needs a non-negative fee")
        delta = new_fee - trade.fee
        if delta == 0:
            raise FaultError("fee_adjust needs a fee different from the trade's")
        if account.balances[quote.code] - delta < 0:
            raise FaultError(f"fee_adjust would make {quote.code} negative")
        adjusted = replace(trade, fee=new_fee)
        account.trades[index] = adjusted
        trade.order.fee += delta
        account.balances[quote.code] -= delta
        entry = LedgerEntry(
            self.exchange.ids.ledger_id(),
            txid,
            self.exchange.clock.now_ns(),
            "adjustment",
            quote,
            -delta,
            Decimal(0),
            account.balances[quote.code],
        )
        account.ledger.append(entry)
        self.exchange.sink.ledger(entry)
        return adjusted

    # -- all --------------------------------------------------------------------------------------------
    def clear(self) -> None:
        self._rest_errors.clear()
        self._rest_delay_ms, self._rest_delay_count = 0, None
        self._silences.clear()
        self._corrupt.clear()
        self._withhold = 0
        self._withhold_market.clear()
        if self.hub is not None:
            self.hub.clear_skips()
        log.info("faults cleared")

    def describe(self) -> dict[str, Any]:
        now = self._clock()
        return {
            "rest_errors": list(self._rest_errors),
            "rest_delay_ms": self._rest_delay_ms,
            "rest_delay_count": self._rest_delay_count,
            "silences": [
                {
                    "scope": s.scope,
                    "connection_id": s.connection_id,
                    "seconds_left": round(s.until - now, 3),
                    "mode": s.mode,
                }
                for s in self._silences
                if s.until > now
            ],
            "corrupt_checksum": {k: v for k, v in self._corrupt.items() if v > 0},
            "withhold_executions": self._withhold,
            "withhold_market": {f"{c}:{s}": n for (c, s), n in self._withhold_market.items() if n > 0},
        }
