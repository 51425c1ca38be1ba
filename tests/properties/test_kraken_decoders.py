"""Property tests of the Kraken WebSocket v2 decoders (`ingest.kraken.messages`, `ingest.kraken.wire`).

- Valid messages, generated with random exact decimals (any scale, trailing zeros kept), ids and timestamps, decode
  to typed messages whose numbers are the very Decimals sent (value and exponent), whether the frame carries them
  as JSON numbers (the WebSocket API) or strings; the library's own encoder round-trips them.
- Anything else (random bytes, random JSON, a valid message with one field replaced by a random JSON value or
  removed) is either decoded or refused with `MalformedMessage`: no other exception type escapes.
"""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ingest.kraken.errors import MalformedMessage
from ingest.kraken.messages import BookMessage, ChannelMessage, Trade, decode, parse, parse_message
from ingest.kraken.wire import encode_json, parse_rfc3339
from tests.properties import examples

FAST = settings(max_examples=examples(150), deadline=None, suppress_health_check=[HealthCheck.too_slow])

# An exact decimal as it travels: a mantissa and a scale (0.00044780 has scale 8 and keeps its zeros).
decimals = st.builds(
    lambda mantissa, scale: Decimal(mantissa).scaleb(-scale),
    st.integers(min_value=0, max_value=10**15),
    st.integers(min_value=0, max_value=12),
)
positive_decimals = decimals.filter(lambda d: d > 0)
moments = st.datetimes(
    min_value=datetime(2013, 1, 1),  # noqa: DTZ001  (hypothesis bounds are naive; timezones= makes them UTC)
    max_value=datetime(2040, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
)
symbols = st.sampled_from(["BTC/USD", "ETH/USD", "XBT/EUR", "DOGE/USDT"])


def rfc3339(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def same_decimal(got: Decimal, sent: Decimal) -> bool:
    """Equal in value and in representation (no float on the way, trailing zeros kept)."""
    return type(got) is Decimal and got.as_tuple() == sent.as_tuple()


@st.composite
def trade_items(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "symbol": draw(symbols),
        "side": draw(st.sampled_from(["buy", "sell"])),
        "price": draw(positive_decimals),
        "qty": draw(positive_decimals),
        "ord_type": draw(st.sampled_from(["limit", "market"])),
        "trade_id": draw(st.integers(min_value=0, max_value=2**63)),
        "timestamp": rfc3339(draw(moments)),
    }


levels = st.lists(st.fixed_dictionaries({"price": positive_decimals, "qty": decimals}), max_size=10)


@st.composite
def book_items(draw: st.DrawFn) -> dict[str, Any]:
    return {
        "symbol": draw(symbols),
        "bids": draw(levels),
        "asks": draw(levels),
        "checksum": draw(st.integers(min_value=0, max_value=2**32 - 1)),
        "timestamp": rfc3339(draw(moments)),
    }


def frame(channel: str, kind: str, items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"channel": channel, "type": kind, "data": items}


@FAST
@given(items=st.lists(trade_items(), min_size=1, max_size=5), kind=st.sampled_from(["snapshot", "update"]))
def test_trades_decode_to_the_exact_decimals_sent(items: list[dict[str, Any]], kind: str) -> None:
    for decimals_as in ("number", "string"):
        message = parse(encode_json(frame("trade", kind, items), decimals=decimals_as))
        assert isinstance(message, ChannelMessage)
        assert (message.channel, message.type) == ("trade", kind)
        assert len(message.items) == len(items)
        for got, sent in zip(message.items, items, strict=True):
            assert isinstance(got, Trade)
            assert same_decimal(got.price, sent["price"])
            assert same_decimal(got.qty, sent["qty"])
            assert (got.symbol, got.side, got.ord_type, got.trade_id) == (
                sent["symbol"],
                sent["side"],
                sent["ord_type"],
                sent["trade_id"],
            )
            assert got.timestamp == datetime.strptime(sent["timestamp"], "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
            assert got.timestamp.tzinfo is UTC


@FAST
@given(item=book_items(), kind=st.sampled_from(["snapshot", "update"]))
def test_book_levels_decode_exactly_and_in_order(item: dict[str, Any], kind: str) -> None:
    message = parse(encode_json(frame("book", kind, [item]), decimals="number"))
    assert isinstance(message, ChannelMessage)
    (book,) = message.items
    assert isinstance(book, BookMessage)
    assert book.checksum == item["checksum"]
    for side in ("bids", "asks"):
        got = getattr(book, side)
        assert len(got) == len(item[side])
        for (price, qty), sent in zip(got, item[side], strict=True):
            assert same_decimal(price, sent["price"])
            assert same_decimal(qty, sent["qty"])


@FAST
@given(value=decimals, sequence=st.integers(min_value=0, max_value=2**70))
def test_decode_keeps_numbers_exact_and_integers_integral(value: Decimal, sequence: int) -> None:
    """A connection id above 2**63 stays an exact int; a number with a fraction is the Decimal written."""
    text = format(value, "f")
    raw = f'{{"v": {text}, "seq": {sequence}, "nested": [{{"v": {text}}}]}}'
    decoded = decode(raw)
    if value.as_tuple().exponent < 0:  # written with a fraction: a Decimal, zeros kept
        assert same_decimal(decoded["v"], value)
    else:
        assert decoded["v"] == value
        assert type(decoded["v"]) is int
    assert decoded["seq"] == sequence
    assert type(decoded["seq"]) is int
    assert decoded["nested"][0]["v"] == value


def only_malformed(call: Any, *args: Any) -> None:
    """The call decodes, or refuses with the library's own error; any other exception fails the property."""
    with contextlib.suppress(MalformedMessage):
        call(*args)


@FAST
@given(raw=st.binary(max_size=300))
def test_random_bytes_decode_or_raise_malformed_message(raw: bytes) -> None:
    only_malformed(parse, raw)


@FAST
@given(text=st.text(max_size=200))
def test_random_text_decodes_or_raises_malformed_message(text: str) -> None:
    only_malformed(parse, text)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | decimals.map(str)
    | st.sampled_from(["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "2026-01-01T00:00:00", "nan"]),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


@FAST
@given(value=st.dictionaries(st.sampled_from(["channel", "type", "data", "method", "sequence", "x"]), json_values))
def test_random_json_objects_parse_or_raise_malformed_message(value: dict[str, Any]) -> None:
    only_malformed(parse, json.dumps(value))


@FAST
@given(
    item=st.one_of(trade_items().map(lambda i: ("trade", i)), book_items().map(lambda i: ("book", i))),
    key=st.sampled_from(["symbol", "side", "price", "qty", "ord_type", "trade_id", "timestamp", "bids", "checksum"]),
    replacement=st.one_of(st.just("<remove>"), json_values),
)
def test_a_valid_message_with_one_field_broken_parses_or_raises_malformed_message(
    item: tuple[str, dict[str, Any]], key: str, replacement: Any
) -> None:
    channel, fields = item
    broken = dict(fields)
    if replacement == "<remove>":
        broken.pop(key, None)
    else:
        broken[key] = replacement
    text = json.dumps(frame(channel, "update", [broken]), default=str)
    try:
        message = parse(text)
    except MalformedMessage:
        return
    assert isinstance(message, ChannelMessage)
    (got,) = message.items
    for name in ("price", "qty"):
        if hasattr(got, name):
            assert type(getattr(got, name)) is Decimal


@FAST
@given(moment=moments, offset_minutes=st.integers(min_value=-23 * 60, max_value=23 * 60))
def test_timestamps_in_any_zone_read_as_the_same_utc_instant(moment: datetime, offset_minutes: int) -> None:
    zone = timedelta(minutes=offset_minutes)
    sign = "-" if offset_minutes < 0 else "+"
    hours, minutes = divmod(abs(offset_minutes), 60)
    local = (moment + zone).strftime("%Y-%m-%dT%H:%M:%S.%f") + f"{sign}{hours:02d}:{minutes:02d}"
    parsed = parse_message(
        {
            "channel": "trade",
            "type": "update",
            "data": [
                {
                    "symbol": "BTC/USD",
                    "side": "buy",
                    "price": Decimal("1"),
                    "qty": Decimal("1"),
                    "ord_type": "limit",
                    "trade_id": 1,
                    "timestamp": local,
                }
            ],
        }
    )
    assert isinstance(parsed, ChannelMessage)
    assert parsed.items[0].timestamp == moment
    assert parsed.items[0].timestamp.tzinfo is UTC


any_zone = st.builds(
    timezone, st.timedeltas(min_value=timedelta(hours=-23, minutes=-59), max_value=timedelta(hours=23, minutes=59))
)


@FAST
@example("0001-01-01T00:00:00+01:00")  # the edges of datetime's range, which a zone can push out of it
@example("9999-12-31T23:59:59.999999-00:01")
@given(
    value=st.one_of(
        st.datetimes(timezones=any_zone).map(datetime.isoformat),  # year 1 to 9999, any offset
        st.datetimes().map(datetime.isoformat),  # no zone
        st.text(max_size=40),
    )
)
def test_any_timestamp_string_reads_as_utc_or_raises_malformed_message(value: str) -> None:
    try:
        parsed = parse_rfc3339(value)
    except MalformedMessage:
        return
    assert parsed.tzinfo is UTC
