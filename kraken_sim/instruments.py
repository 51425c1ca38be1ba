"""Assets and trading pairs the simulator lists, with Kraken's names and precisions (PROTOCOL.md §5).

Kraken names one pair several ways: the REST result key (``XXBTZUSD``), the REST altname (``XBTUSD``), the
``wsname`` of AssetPairs (``XBT/USD``, also the v1 WebSocket name) and the WebSocket v2 symbol (``BTC/USD``).
Assets likewise have a legacy REST id (``XXBT``, ``ZUSD``), an altname (``XBT``) and a v2 code (``BTC``).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal


@dataclass(frozen=True, slots=True)
class Asset:
    code: str  # WebSocket v2 code: BTC, USD
    rest_id: str  # legacy REST id: XXBT, ZUSD
    altname: str  # XBT, USD
    decimals: int  # balances and ledger amounts
    display_decimals: int


@dataclass(frozen=True, slots=True)
class Instrument:
    symbol: str  # WebSocket v2: BTC/USD
    base: Asset
    quote: Asset
    rest_key: str  # XXBTZUSD
    altname: str  # XBTUSD
    wsname: str  # XBT/USD
    price_decimals: int  # pair_decimals
    lot_decimals: int
    cost_decimals: int
    tick_size: Decimal
    ordermin: Decimal
    costmin: Decimal
    # Market generator defaults: a starting price and the spacing between the levels it quotes.
    initial_price: Decimal
    level_spacing: Decimal
    typical_qty: Decimal

    @property
    def lot_step(self) -> Decimal:
        return Decimal(1).scaleb(-self.lot_decimals)

    @property
    def price_step(self) -> Decimal:
        return Decimal(1).scaleb(-self.price_decimals)

    def price_on_tick(self, price: Decimal) -> Decimal:
        """The nearest tick at or below ``price`` (never below one tick)."""
        ticks = (price / self.tick_size).to_integral_value(rounding="ROUND_FLOOR")
        return max(ticks, Decimal(1)) * self.tick_size


ASSETS: dict[str, Asset] = {
    a.code: a
    for a in (
        Asset("USD", "ZUSD", "USD", 4, 2),
        Asset("EUR", "ZEUR", "EUR", 4, 2),
        Asset("BTC", "XXBT", "XBT", 10, 5),
        Asset("ETH", "XETH", "ETH", 10, 5),
    )
}

CATALOGUE: dict[str, Instrument] = {
    i.symbol: i
    for i in (
        Instrument(
            symbol="BTC/USD",
            base=ASSETS["BTC"],
            quote=ASSETS["USD"],
            rest_key="XXBTZUSD",
            altname="XBTUSD",
            wsname="XBT/USD",
            price_decimals=1,
            lot_decimals=8,
            cost_decimals=5,
            tick_size=Decimal("0.1"),
            ordermin=Decimal("0.00005"),
            costmin=Decimal("0.5"),
            initial_price=Decimal("60000.0"),
            level_spacing=Decimal("0.5"),
            typical_qty=Decimal("0.05"),
        ),
        Instrument(
            symbol="ETH/USD",
            base=ASSETS["ETH"],
            quote=ASSETS["USD"],
            rest_key="XETHZUSD",
            altname="ETHUSD",
            wsname="ETH/USD",
            price_decimals=2,
            lot_decimals=8,
            cost_decimals=5,
            tick_size=Decimal("0.01"),
            ordermin=Decimal("0.002"),
            costmin=Decimal("0.5"),
            initial_price=Decimal("3000.00"),
            level_spacing=Decimal("0.05"),
            typical_qty=Decimal("0.8"),
        ),
        Instrument(
            symbol="BTC/EUR",
            base=ASSETS["BTC"],
            quote=ASSETS["EUR"],
            rest_key="XXBTZEUR",
            altname="XBTEUR",
            wsname="XBT/EUR",
            price_decimals=1,
            lot_decimals=8,
            cost_decimals=5,
            tick_size=Decimal("0.1"),
            ordermin=Decimal("0.00005"),
            costmin=Decimal("0.5"),
            initial_price=Decimal("55000.0"),
            level_spacing=Decimal("0.5"),
            typical_qty=Decimal("0.05"),
        ),
    )
}

DEFAULT_SYMBOLS: tuple[str, ...] = ("BTC/USD", "ETH/USD")


class UnknownInstrumentError(ValueError):
    pass


class InstrumentRegistry:
    """The instruments one simulator lists, found by any of Kraken's names for them."""

    def __init__(self, symbols: Iterable[str]) -> None:
        self._by_symbol: dict[str, Instrument] = {}
        for raw in symbols:
            symbol = raw.strip().upper()
            if symbol not in CATALOGUE:
                known = ", ".join(sorted(CATALOGUE))
                raise UnknownInstrumentError(f"unknown instrument {raw!r} (known: {known})")
            self._by_symbol[symbol] = CATALOGUE[symbol]
        if not self._by_symbol:
            raise UnknownInstrumentError("at least one instrument is required")
        self._rest_names: dict[str, Instrument] = {}
        for inst in self._by_symbol.values():
            for name in (
                inst.rest_key,
                inst.altname,
                inst.wsname,
                inst.symbol,
                inst.base.code + inst.quote.code,
                inst.base.rest_id + inst.quote.rest_id,
            ):
                self._rest_names[name.upper()] = inst
        self._assets: dict[str, Asset] = {}
        for inst in self._by_symbol.values():
            self._assets[inst.base.code] = inst.base
            self._assets[inst.quote.code] = inst.quote

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._by_symbol.values())

    def __len__(self) -> int:
        return len(self._by_symbol)

    @property
    def symbols(self) -> list[str]:
        return list(self._by_symbol)

    @property
    def assets(self) -> list[Asset]:
        return list(self._assets.values())

    def by_symbol(self, symbol: str) -> Instrument | None:
        """WebSocket v2 lookup: only the v2 symbol is accepted (``XBT/USD`` is refused, as on Kraken)."""
        return self._by_symbol.get(symbol)

    def by_rest_name(self, name: str) -> Instrument | None:
        return self._rest_names.get(name.strip().upper())

    def add_asset(self, asset: Asset) -> None:
        """List an asset no pair trades (one that only balance moves bring, e.g. ``DOT.S``)."""
        self._assets.setdefault(asset.code, asset)

    def asset(self, code: str) -> Asset | None:
        return self._assets.get(code)

    def asset_by_any_name(self, name: str) -> Asset | None:
        upper = name.strip().upper()
        for asset in self._assets.values():
            if upper in (asset.code, asset.rest_id, asset.altname):
                return asset
        return None
