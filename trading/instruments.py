"""Instruments (Kraken's asset pairs, keyed by their v2 symbol), their order rules as the risk checks read them,
and their last quotes (the risk manager's mid and its age, the monitor's marks)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from django.db import transaction

from core.errors import ApplicationError
from ingest.kraken.assets import asset_v2_name
from ingest.kraken.rest_types import AssetPair
from trading import lock_objects
from trading.attribution import attributed
from trading.executions import EventSource
from trading.models import Instrument, MarketQuote
from trading.pnl import ZERO, q_price
from trading.risk import InstrumentRules


def instrument_upsert(*, symbol: str, base: str, quote: str, **fields: Any) -> Instrument:
    """Create or update an instrument by its v2 symbol. `fields` are other Instrument fields (rest_symbol,
    altname, v1_symbol, price_precision, qty_precision, tick_size, qty_increment, ordermin, costmin, status)."""
    allowed = {f.name for f in Instrument._meta.concrete_fields} - {"id", "symbol", "base", "quote", "updated_at"}
    unknown = set(fields) - allowed
    if unknown:
        raise ApplicationError(f"unknown instrument fields: {sorted(unknown)}", code="validation_error")
    with transaction.atomic(), attributed(None, EventSource.SYSTEM, f"instrument {symbol}"):
        instrument = lock_objects.instrument_lock(symbol)
        if instrument is None:
            instrument = Instrument(symbol=symbol, base=base, quote=quote, **fields)
            instrument.full_clean()
            instrument.save()
            return instrument
        changed = [
            name
            for name, value in {"base": base, "quote": quote, **fields}.items()
            if getattr(instrument, name) != value
        ]
        if changed:
            for name in changed:
                setattr(instrument, name, {"base": base, "quote": quote, **fields}[name])
            instrument.full_clean(validate_unique=False)
            instrument.save()
        return instrument


def instrument_sync_from_asset_pair(*, pair: AssetPair) -> Instrument:
    """From REST AssetPairs: the only source of the REST key, altname and v1 wsname."""
    if not pair.wsname or "/" not in pair.wsname:
        raise ApplicationError(f"asset pair {pair.key} has no wsname", code="validation_error")
    v1_base, v1_quote = pair.wsname.split("/", 1)
    base, quote = asset_v2_name(v1_base), asset_v2_name(v1_quote)
    fields: dict[str, Any] = {
        "rest_symbol": pair.key,
        "altname": pair.altname,
        "v1_symbol": pair.wsname,
        "price_precision": pair.pair_decimals,
        "qty_precision": pair.lot_decimals,
        "tick_size": pair.tick_size if pair.tick_size is not None else Decimal(1).scaleb(-pair.pair_decimals),
        "ordermin": pair.ordermin if pair.ordermin is not None else ZERO,
        "costmin": pair.costmin,
    }
    if pair.taker_fee is not None:
        fields["taker_fee"] = pair.taker_fee
    if pair.maker_fee is not None:
        fields["maker_fee"] = pair.maker_fee
    if pair.status is not None:
        fields["status"] = pair.status
    return instrument_upsert(symbol=f"{base}/{quote}", base=base, quote=quote, **fields)


def instrument_rules(instrument: Instrument) -> InstrumentRules:
    return InstrumentRules(
        symbol=instrument.symbol,
        base=instrument.base,
        quote=instrument.quote,
        tick_size=instrument.tick_size,
        ordermin=instrument.ordermin,
        costmin=instrument.costmin,
        qty_increment=instrument.qty_increment,
        status=instrument.status,
    )


def market_quote_set(*, instrument: Instrument, bid: Decimal, ask: Decimal, at: datetime) -> MarketQuote:
    """Record the top of book (the ingest worker calls this, throttled). An older quote never replaces a newer."""
    if bid <= 0 or ask < bid:
        raise ApplicationError("Invalid quote.", code="validation_error", details={"bid": str(bid), "ask": str(ask)})
    if at.tzinfo is None:
        raise ApplicationError("Quote time must be timezone-aware.", code="validation_error")
    mid = q_price((bid + ask) / 2)
    with transaction.atomic():
        quote, created = lock_objects.market_quote_lock(
            instrument, defaults={"bid": bid, "ask": ask, "mid": mid, "quoted_at": at}
        )
        if not created and at >= quote.quoted_at:
            quote.bid, quote.ask, quote.mid, quote.quoted_at = bid, ask, mid, at
            quote.save()
    return quote
