"""Exact decoding of v2 frames and the typed message parser, on real recorded messages from PROTOCOL.md."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest

from ingest.kraken.messages import (
    OHLC,
    Ack,
    BalanceUpdate,
    BookMessage,
    ChannelMessage,
    Execution,
    Heartbeat,
    Instrument,
    MalformedMessage,
    Status,
    Ticker,
    Trade,
    decode,
    parse,
    parse_message,
    to_decimal,
)

STATUS_2026 = (
    '{"channel":"status","type":"update","data":[{"version":"2.0.10","system":"online","api_version":"v2",'
    '"connection_id":18125794168470749634,"upcoming_maintenance":[],"emergency":[]}]}'
)
TICKER_2026 = (
    '{"channel":"ticker","type":"update","data":[{"symbol":"BTC/USD","bid":83744.2,"bid_qty":0.56251979,'
    '"ask":83744.3,"ask_qty":0.00044780,"last":83744.3,"volume":3156.84782110,"vwap":84174.6,"low":83163.6,'
    '"high":85247.4,"change":-429.3,"change_pct":-0.51,"trades":135262,"timestamp":"2026-09-25T17:48:26.844359Z"}]}'
)
TRADE_2026 = (
    '{"channel":"trade","type":"update","data":[{"symbol":"BTC/USD","side":"buy","price":83744.3,'
    '"qty":0.00044780,"ord_type":"limit","trade_id":109116693,"timestamp":"2026-09-25T17:48:26.844359Z"}]}'
)
OHLC_2026 = (
    '{"channel":"ohlc","type":"update","timestamp":"2026-09-25T17:48:26.844359566Z","data":[{"symbol":"BTC/USD",'
    '"open":83729.5,"high":83745.2,"low":83729.4,"close":83744.3,"trades":33,"volume":0.21155628,"vwap":83736.4,'
    '"interval_begin":"2026-09-25T17:48:00.000000000Z","interval":1,"timestamp":"2026-09-25T17:49:00.000000Z"}]}'
)
EXEC_TRADE = (
    '{"channel":"executions","type":"update","data":[{"order_id":"OK4GJX-KSTLS-7DZZO5","order_userref":3,'
    '"exec_id":"TGBB7L-HT5LX-J3BZ4A","exec_type":"trade","trade_id":62887576,"symbol":"BTC/USD","side":"sell",'
    '"last_qty":0.005,"last_price":26599.9,"liquidity_ind":"t","cost":132.9995,"order_type":"limit",'
    '"timestamp":"2023-09-22T10:33:05.709993Z","order_status":"partially_filled","cum_qty":0.005,'
    '"cum_cost":132.9995,"avg_price":26599.9,"fee_usd_equiv":0.3458,"fees":[{"asset":"USD","qty":0.3458}]}],'
    '"sequence":10}'
)
EXEC_CANCELED = (
    '{"channel":"executions","type":"update","data":[{"timestamp":"2024-05-18T12:58:40.165132Z",'
    '"order_status":"canceled","exec_type":"canceled","cum_qty":0.00000000,"cum_cost":0.000000,'
    '"fee_usd_equiv":0.000000,"avg_price":0.00000,"order_userref":0,"cancel_reason":"User requested",'
    '"reason":"User requested","order_id":"KIUEL4-G3PWU-HOJTYU"}],"sequence":143}'
)
BALANCES_SNAPSHOT = (
    '{"channel":"balances","data":[{"asset":"BTC","asset_class":"currency","balance":1.2,"wallets":[{"type":"spot",'
    '"id":"main","balance":1.2}]},{"asset":"USD","asset_class":"currency","balance":80595.4943,"wallets":'
    '[{"type":"spot","id":"main","balance":80595.4943}]}],"type":"snapshot","sequence":1}'
)
BALANCES_UPDATE = (
    '{"channel":"balances","type":"update","data":[{"ledger_id":"DATKX6-PEHL1-HZKND8","ref_id":"LKAKN2-N0N12-VKQNLN",'
    '"timestamp":"2024-05-24T14:01:53.526524Z","type":"trade","asset":"USD","asset_class":"currency",'
    '"category":"trade","wallet_type":"spot","wallet_id":"main","amount":-19.9743,"fee":0.0499,'
    '"balance":118.0677}],"sequence":4}'
)
SUBSCRIBE_ACK = (
    '{"method":"subscribe","req_id":11,"result":{"channel":"book","depth":10,"snapshot":true,"symbol":"BTC/USD"},'
    '"success":true,"time_in":"2024-05-19T16:27:13.694962Z","time_out":"2024-05-19T16:27:13.695006Z"}'
)
SUBSCRIBE_ERROR = (
    '{"error":"Currency pair not supported XBT/USD","method":"subscribe","success":false,"symbol":"XBT/USD",'
    '"time_in":"2026-09-25T17:48:54.701041Z","time_out":"2026-09-25T17:48:54.701062Z"}'
)
PONG = '{"method":"pong","req_id":101,"time_in":"2023-09-24T14:10:23.799685Z","time_out":"2023-09-24T14:10:23.799703Z"}'
INSTRUMENT = (
    '{"channel":"instrument","type":"snapshot","data":{"assets":[{"id":"USD","status":"enabled","precision":4,'
    '"precision_display":2,"borrowable":true,"collateral_value":1.0,"margin_rate":0.015}],"pairs":[{"symbol":'
    '"BTC/USD","base":"BTC","quote":"USD","status":"online","qty_precision":8,"qty_increment":1e-08,'
    '"price_precision":1,"cost_precision":5,"marginable":true,"has_index":true,"cost_min":0.5,"margin_initial":0.2,'
    '"position_limit_long":250,"position_limit_short":200,"tick_size":0.1,"price_increment":0.1,"qty_min":0.0001}]}}'
)


# --- decode -------------------------------------------------------------------------------------------


def test_decode_keeps_prices_as_exact_decimals_with_trailing_zeros() -> None:
    message = decode(TICKER_2026)
    data = message["data"][0]
    assert type(data["ask_qty"]) is Decimal
    assert str(data["ask_qty"]) == "0.00044780"
    assert str(data["volume"]) == "3156.84782110"
    assert data["bid"] == Decimal("83744.2")


def test_decode_keeps_a_connection_id_above_2_63_exact() -> None:
    status = decode(STATUS_2026)["data"][0]
    assert status["connection_id"] == 18125794168470749634
    assert status["connection_id"] > 2**63
    assert type(status["connection_id"]) is int


def test_decode_accepts_bytes_and_keeps_integers_as_int() -> None:
    message = decode(TRADE_2026.encode())
    assert type(message["data"][0]["trade_id"]) is int
    assert decode(b'  {"channel":"heartbeat"}\n') == {"channel": "heartbeat"}


def test_decode_keeps_exponent_notation_exact() -> None:
    assert decode('{"x":1e-08}')["x"] == Decimal("1E-8")


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "not valid JSON"),
        (b"not json", "not valid JSON"),
        (b'{"channel":"book"', "not valid JSON"),
        (b"[1,2,3]", "expected an object"),
        (b'"text"', "expected an object"),
        (b'{"a":1} {"b":2}', "trailing data"),
        (b'{"price":NaN}', "non-finite"),
        (b'{"price":Infinity}', "non-finite"),
        (b'{"a":"\xff"}', "UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "not valid JSON"),
    ],
)
def test_malformed_frames_raise_malformed_message(raw: bytes, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        decode(raw)


@pytest.mark.parametrize("value", [1.5, True, None, "abc", "NaN", [1]])
def test_to_decimal_refuses_inexact_or_non_numbers(value: object) -> None:
    with pytest.raises(MalformedMessage):
        to_decimal(value)


# --- parse --------------------------------------------------------------------------------------------


def test_parse_status_message() -> None:
    message = parse(STATUS_2026)
    assert message == ChannelMessage(
        "status", "update", (Status("online", "v2", 18125794168470749634, "2.0.10"),), None
    )


def test_parse_ticker_message() -> None:
    message = parse(TICKER_2026)
    assert isinstance(message, ChannelMessage)
    (ticker,) = message.items
    assert isinstance(ticker, Ticker)
    assert ticker.ask_qty == Decimal("0.00044780")
    assert ticker.change == Decimal("-429.3")
    assert ticker.trades == 135262
    assert ticker.timestamp == datetime(2026, 9, 25, 17, 48, 26, 844359, tzinfo=UTC)


def test_parse_trade_message() -> None:
    message = parse(TRADE_2026)
    assert message.items == (
        Trade(
            "BTC/USD",
            "buy",
            Decimal("83744.3"),
            Decimal("0.00044780"),
            "limit",
            109116693,
            datetime(2026, 9, 25, 17, 48, 26, 844359, tzinfo=UTC),
        ),
    )


def test_parse_ohlc_message_with_nanosecond_interval_begin() -> None:
    (bar,) = parse(OHLC_2026).items
    assert isinstance(bar, OHLC)
    assert bar.interval_begin == datetime(2026, 9, 25, 17, 48, tzinfo=UTC)
    assert bar.volume == Decimal("0.21155628")
    assert bar.trades == 33


def test_parse_book_message_keeps_level_order() -> None:
    raw = (
        '{"channel":"book","type":"update","data":[{"symbol":"BTC/USD","bids":[],"asks":[{"price":29431.1,'
        '"qty":0.0},{"price":29433.3,"qty":0.8}],"checksum":3547452596,"timestamp":"2023-07-30T15:29:58.343415Z"}]}'
    )
    (book,) = parse(raw).items
    assert isinstance(book, BookMessage)
    assert book.asks == ((Decimal("29431.1"), Decimal("0.0")), (Decimal("29433.3"), Decimal("0.8")))
    assert book.checksum == 3547452596


def test_parse_execution_trade_and_sparse_cancel() -> None:
    trade_message = parse(EXEC_TRADE)
    assert trade_message.sequence == 10
    (trade,) = trade_message.items
    assert isinstance(trade, Execution)
    assert trade.last_price == Decimal("26599.9")
    assert trade.cost == Decimal("132.9995")
    assert trade.fees[0].qty == Decimal("0.3458")
    (cancel,) = parse(EXEC_CANCELED).items
    assert cancel.exec_type == "canceled"
    assert cancel.symbol is None
    assert str(cancel.cum_qty) == "0E-8"
    assert cancel.reason == "User requested"


def test_parse_balances_snapshot_and_ledger_update() -> None:
    snapshot = parse(BALANCES_SNAPSHOT)
    assert snapshot.type == "snapshot"
    assert [b.asset for b in snapshot.items] == ["BTC", "USD"]
    assert snapshot.items[1].wallets[0].balance == Decimal("80595.4943")
    (update,) = parse(BALANCES_UPDATE).items
    assert isinstance(update, BalanceUpdate)
    assert update.amount == Decimal("-19.9743")
    assert update.fee == Decimal("0.0499")


def test_parse_acks_and_pong() -> None:
    ack = parse(SUBSCRIBE_ACK)
    assert isinstance(ack, Ack)
    assert ack.success is True
    assert ack.req_id == 11
    assert ack.symbol == "BTC/USD"
    error = parse(SUBSCRIBE_ERROR)
    assert error.success is False
    assert error.error == "Currency pair not supported XBT/USD"
    pong = parse(PONG)
    assert pong.method == "pong"
    assert pong.req_id == 101


def test_parse_heartbeat_and_instrument() -> None:
    assert parse('{"channel":"heartbeat"}') == Heartbeat()
    (instrument,) = parse(INSTRUMENT).items
    assert isinstance(instrument, Instrument)
    pair = instrument.pairs[0]
    assert (pair.price_precision, pair.qty_precision) == (1, 8)
    assert pair.price_increment == Decimal("0.1")
    assert pair.qty_increment == Decimal("1E-8")


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        ({"channel": "levels", "type": "update", "data": []}, "unknown channel"),
        ({"data": []}, "neither"),
        ({"channel": "trade", "type": "partial", "data": []}, "neither 'snapshot'"),
        ({"channel": "trade", "type": "update", "data": {}}, "expected an array"),
        ({"channel": "trade", "type": "update", "data": [{"symbol": "BTC/USD"}]}, "side"),
        (
            {"channel": "book", "type": "update", "data": [{"symbol": "X", "asks": [], "bids": []}]},
            "checksum",
        ),
        ({"channel": "ticker", "type": "update", "data": [{"symbol": "X", "bid": 1.5}]}, "float"),
        ({"channel": "trade", "type": "update", "data": ["x"]}, "expected an object"),
        ({"method": "subscribe", "success": "yes"}, "boolean"),
        ({"method": "pong", "time_in": "yesterday"}, "RFC3339"),
    ],
)
def test_parse_rejects_unknown_or_malformed_messages(message: dict, reason: str) -> None:
    with pytest.raises(MalformedMessage, match=reason):
        parse_message(message)
