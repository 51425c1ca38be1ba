"""How the pages show numbers and times (the same rules as `static/dashboard/format.js`): money to the
instrument's precision, quantities to the lot precision, times to the second in UTC with the zone named.
A page never shows a raw 18-digit decimal."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from trading.models import Instrument

# Quote currencies shown with cents; any other quote (a crypto quote such as BTC) uses the pair's price precision.
FIAT_PLACES = {"USD": 2, "EUR": 2, "GBP": 2, "CAD": 2, "AUD": 2, "CHF": 2, "JPY": 0, "USDT": 2, "USDC": 2}
DASH = "–"


def money_places(currency: str, *, fallback: int = 8) -> int:
    """Decimal places of an amount in `currency` (fees, PnL, equity)."""
    return FIAT_PLACES.get(currency.upper(), fallback)


def instrument_places(instrument: Instrument) -> dict[str, int]:
    """The precisions a page needs for one instrument: its price, its quantity and its quote-currency money."""
    return {
        "price": instrument.price_precision,
        "qty": instrument.qty_precision,
        "money": money_places(instrument.quote, fallback=instrument.price_precision),
    }


def _as_decimal(value: Decimal | str | float | int | None) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        return None


def format_decimal(value: Decimal | str | float | int | None, places: int, *, group: bool = True) -> str:
    """`value` rounded half-up to `places`, with thousands separators (`group`); a dash for nothing."""
    number = _as_decimal(value)
    if number is None or not number.is_finite():
        return DASH
    rounded = number.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    if rounded == 0:
        rounded = abs(rounded)  # no "-0.00"
    return f"{rounded:,.{places}f}" if group else f"{rounded:.{places}f}"


def format_percent(fraction: Decimal | str | float | int | None, places: int = 2) -> str:
    number = _as_decimal(fraction)
    if number is None:
        return DASH
    return f"{format_decimal(number * 100, places)} %"


def format_time(value: datetime | None) -> str:
    """`2026-12-07 18:20:15 UTC`: to the second, the zone named."""
    if value is None:
        return DASH
    if value.tzinfo is None:
        raise ValueError("naive datetime: every timestamp of the project is timezone-aware UTC")
    return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
