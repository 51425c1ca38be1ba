"""REST client: envelope and error parsing, request signing and shaping, OrderOutcomeUnknown.

These tests use httpx's MockTransport as a stand-in for Kraken's HTTP endpoint, only to check how the client
builds requests and reads the ``{"error": [...], "result": ...}`` envelope (response bodies copied from
PROTOCOL.md). The real integration tests, against the local exchange simulator over real sockets, come with
the simulator (kraken_sim/).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from collections.abc import Callable
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs

import httpx
import pytest

from ingest.kraken import errors
from ingest.kraken.auth import ProcessNonce
from ingest.kraken.ratelimit import Tier
from ingest.kraken.rest import KrakenRestClient, KrakenRestClientSync, encode_params

KEY = "test-key"
SECRET = base64.b64encode(b"0123456789abcdef" * 4).decode()


def expected_signature(path: str, body: str, nonce: str) -> str:
    """Independent API-Sign computation from PROTOCOL.md §1.2."""
    digest = hashlib.sha256((nonce + body).encode()).digest()
    mac = hmac.new(base64.b64decode(SECRET), path.encode() + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


class FakeKraken:
    """Records requests, checks signatures, answers from a per-method function."""

    def __init__(self, routes: dict[str, Callable[[dict[str, Any]], Any]]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, Any], httpx.Request]] = []
        self.last_nonce = 0

    def __call__(self, request: httpx.Request) -> httpx.Response:
        method = request.url.path.rsplit("/", 1)[-1]
        if request.url.path.startswith("/0/private/"):
            body = request.content.decode()
            if request.headers["content-type"] == "application/json":
                params = json.loads(body)
            else:
                params = {k: v[0] for k, v in parse_qs(body, keep_blank_values=True).items()}
            nonce = str(params["nonce"])
            if request.headers.get("API-Key") != KEY:
                return httpx.Response(200, json={"error": ["EAPI:Invalid key"]})
            if request.headers.get("API-Sign") != expected_signature(request.url.path, body, nonce):
                return httpx.Response(200, json={"error": ["EAPI:Invalid signature"]})
            if int(nonce) <= self.last_nonce:
                return httpx.Response(200, json={"error": ["EAPI:Invalid nonce"]})
            self.last_nonce = int(nonce)
        else:
            params = dict(request.url.params)
        self.requests.append((method, params, request))
        answer = self.routes[method](params)
        if isinstance(answer, httpx.Response):
            return answer
        if isinstance(answer, Exception):
            raise answer
        return httpx.Response(200, content=answer if isinstance(answer, bytes) else json.dumps(answer).encode())


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_client(fake: FakeKraken, clock: FakeClock | None = None, **kwargs: Any) -> KrakenRestClient:
    clock = clock or FakeClock()
    return KrakenRestClient(
        base_url="https://kraken.test",
        api_key=KEY,
        api_secret=SECRET,
        transport=httpx.MockTransport(fake),
        clock=clock,
        sleep=clock.sleep,
        **kwargs,
    )


def ok(result: Any) -> dict[str, Any]:
    return {"error": [], "result": result}


# --- envelope and typed results -----------------------------------------------------------------------


async def test_balance_returns_exact_decimals_and_signs_the_form_body() -> None:
    fake = FakeKraken({"Balance": lambda p: ok({"ZUSD": "171288.6158", "XXBT": "1011.1908877900"})})
    async with make_client(fake) as client:
        balances = await client.balance()
    assert balances == {"ZUSD": Decimal("171288.6158"), "XXBT": Decimal("1011.1908877900")}
    assert str(balances["XXBT"]) == "1011.1908877900"
    _, params, request = fake.requests[0]
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert request.headers["user-agent"].startswith("gal-friday/")
    assert set(params) == {"nonce"}


async def test_json_bodies_are_signed_exactly_as_sent() -> None:
    fake = FakeKraken(
        {
            "AddOrder": lambda p: ok(
                {"descr": {"order": "buy 1.25000000 XBTUSD @ limit 27500.0"}, "txid": ["OUF4EM-FRGI2-MQMWZD"]}
            )
        }
    )
    async with make_client(fake, json_body=True) as client:
        result = await client.add_order(
            pair="XBTUSD",
            side="buy",
            ordertype="limit",
            volume=Decimal("1.25"),
            price=Decimal("27500.0"),
            cl_ord_id="decision-1",
        )
    assert result.txids == ("OUF4EM-FRGI2-MQMWZD",)
    assert result.description == "buy 1.25000000 XBTUSD @ limit 27500.0"
    _, params, request = fake.requests[0]
    assert request.headers["content-type"] == "application/json"
    assert params["volume"] == "1.25"
    assert params["price"] == "27500.0"
    assert isinstance(params["nonce"], int)


async def test_open_orders_parse_string_and_number_timestamps() -> None:
    order = {
        "refid": None,
        "userref": "0",
        "status": "open",
        "opentm": "1705260203.583000",
        "starttm": "0",
        "expiretm": 0,
        "descr": {
            "pair": "LTCUSDT",
            "type": "sell",
            "ordertype": "take-profit",
            "price": "120.00000",
            "price2": "0",
            "leverage": "none",
            "order": "sell 0.10000000 LTCUSDT @ take profit 120.00000",
            "close": "",
        },
        "vol": "0.10000000",
        "vol_exec": "0.00000000",
        "cost": "0.000000",
        "fee": "0.000000",
        "price": "0.000000",
        "stopprice": "0.000000",
        "limitprice": "0.000000",
        "misc": "",
        "oflags": "fciq",
    }
    numeric = dict(order, opentm=1688665496.7808)
    fake = FakeKraken({"OpenOrders": lambda p: ok({"open": {"OXCZ7B-EMVZQ-MTJTQJ": order, "O2": numeric}})})
    async with make_client(fake) as client:
        orders = await client.open_orders()
    first = orders["OXCZ7B-EMVZQ-MTJTQJ"]
    assert first.vol == Decimal("0.10000000")
    assert first.descr.price == Decimal("120.00000")
    assert first.userref == 0
    assert first.opentm == Decimal("1705260203.583000")
    assert orders["O2"].opentm == Decimal("1688665496.7808")
    assert first.opened_at is not None
    assert first.opened_at.tzinfo is not None


async def test_public_ohlc_is_typed_and_needs_no_key() -> None:
    rows = [[1706626800, "43437.5", "43593.7", "43355.5", "43361.1", "43511.3", "18.75430110", 162]]
    fake = FakeKraken({"OHLC": lambda p: ok({"XBTUSDT": rows, "last": "1706796000"})})
    async with KrakenRestClient(base_url="https://kraken.test", transport=httpx.MockTransport(fake)) as client:
        result = await client.ohlc("XBTUSDT", interval=60)
    assert result.key == "XBTUSDT"
    assert result.last == 1706796000
    assert result.bars[0].volume == Decimal("18.75430110")
    assert fake.requests[0][1] == {"pair": "XBTUSDT", "interval": "60"}


@pytest.mark.parametrize(
    ("envelope", "exc_type", "retryable"),
    [
        ({"error": ["EAPI:Invalid key"]}, errors.AuthenticationError, False),
        ({"error": ["EOrder:Insufficient funds"]}, errors.InsufficientFunds, False),
        ({"error": ["EQuery:Unknown asset pair"]}, errors.UnknownAssetPair, False),
        ({"error": ["EService:Unavailable"], "result": {}}, errors.ServiceUnavailable, True),
        ({"error": ["EGeneral:Permission denied"]}, errors.PermissionDenied, False),
        ({"result": {}}, errors.InvalidResponse, True),
        ({"error": []}, errors.InvalidResponse, True),
        ([], errors.InvalidResponse, True),
    ],
)
async def test_error_envelopes_raise_typed_exceptions(envelope: Any, exc_type: type, retryable: bool) -> None:
    fake = FakeKraken({"Balance": lambda p: envelope})
    async with make_client(fake) as client:
        with pytest.raises(exc_type) as info:
            await client.balance()
    assert info.value.retryable is retryable


async def test_warnings_alone_do_not_fail_the_call() -> None:
    fake = FakeKraken({"Balance": lambda p: {"error": ["WGeneral:Deprecated"], "result": {"ZUSD": "1.0"}}})
    async with make_client(fake) as client:
        assert await client.balance() == {"ZUSD": Decimal("1.0")}


async def test_non_200_status_raises_http_status_error() -> None:
    fake = FakeKraken({"Balance": lambda p: httpx.Response(503, text="<html>down</html>")})
    async with make_client(fake) as client:
        with pytest.raises(errors.HttpStatusError) as info:
            await client.balance()
    assert info.value.status_code == 503
    assert info.value.retryable


async def test_non_json_body_raises_invalid_response() -> None:
    fake = FakeKraken({"Balance": lambda p: b"<html>oops</html>"})
    async with make_client(fake) as client:
        with pytest.raises(errors.InvalidResponse):
            await client.balance()


async def test_invalid_nonce_is_retried_once_with_a_larger_nonce() -> None:
    answers = iter([{"error": ["EAPI:Invalid nonce"]}, ok({"ZUSD": "5"})])
    fake = FakeKraken({"Balance": lambda p: next(answers)})
    async with make_client(fake) as client:
        assert await client.balance() == {"ZUSD": Decimal("5")}
        assert client.stats["nonce_retries"] == 1
    first, second = (int(p["nonce"]) for _, p, _ in fake.requests)
    assert second > first


async def test_private_call_without_credentials_is_refused_before_sending() -> None:
    fake = FakeKraken({})
    async with KrakenRestClient(base_url="https://kraken.test", transport=httpx.MockTransport(fake)) as client:
        with pytest.raises(ValueError, match="api_key"):
            await client.balance()
    assert fake.requests == []


# --- AddOrder outcome ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "failure",
    [
        httpx.ReadTimeout("read timed out"),
        httpx.RemoteProtocolError("Server disconnected without sending a response."),
        httpx.ReadError("connection reset"),
        httpx.Response(502, text="Bad gateway"),
        b"{truncated",
        {"error": ["EGeneral:Internal error"]},
    ],
)
async def test_add_order_with_unknown_outcome_raises_order_outcome_unknown(failure: Any) -> None:
    fake = FakeKraken({"AddOrder": lambda p: failure})
    async with make_client(fake) as client:
        with pytest.raises(errors.OrderOutcomeUnknown) as info:
            await client.add_order(
                pair="XBTUSD",
                side="buy",
                ordertype="limit",
                volume=Decimal("0.01"),
                price=Decimal("30000"),
                cl_ord_id="decision-42",
                userref=42,
            )
        assert client.stats["outcome_unknown"] == 1
    assert info.value.cl_ord_id == "decision-42"
    assert info.value.userref == 42
    assert info.value.retryable is False


async def test_add_order_that_could_not_connect_is_a_retryable_transport_error() -> None:
    fake = FakeKraken({"AddOrder": lambda p: httpx.ConnectError("connection refused")})
    async with make_client(fake) as client:
        with pytest.raises(errors.TransportError) as info:
            await client.add_order(pair="XBTUSD", side="buy", ordertype="market", volume=Decimal("0.01"))
    assert not isinstance(info.value, errors.OrderOutcomeUnknown)
    assert info.value.retryable


async def test_add_order_rejection_is_the_typed_error_not_unknown() -> None:
    fake = FakeKraken({"AddOrder": lambda p: {"error": ["EOrder:Insufficient funds"]}})
    async with make_client(fake) as client:
        with pytest.raises(errors.InsufficientFunds):
            await client.add_order(pair="XBTUSD", side="buy", ordertype="market", volume=Decimal("1"))


async def test_read_timeout_on_a_read_call_is_a_plain_transport_error() -> None:
    fake = FakeKraken({"Balance": lambda p: httpx.ReadTimeout("slow")})
    async with make_client(fake) as client:
        with pytest.raises(errors.TransportError) as info:
            await client.balance()
    assert not isinstance(info.value, errors.OrderOutcomeUnknown)


# --- rate limits, pagination, batching ----------------------------------------------------------------


async def test_rate_limit_error_saturates_the_model_so_the_next_call_waits() -> None:
    answers = iter([{"error": ["EAPI:Rate limit exceeded"]}, ok({"ZUSD": "1"})])
    fake = FakeKraken({"Balance": lambda p: next(answers)})
    clock = FakeClock()
    async with make_client(fake, clock, tier=Tier.INTERMEDIATE) as client:
        with pytest.raises(errors.ApiRateLimitExceeded):
            await client.balance()
        assert clock.sleeps == []
        await client.balance()
    assert sum(clock.sleeps) == pytest.approx(2.0)  # from the maximum, 1 unit at -0.5/s


async def test_cancel_of_a_fresh_order_waits_on_the_pair_engine_counter() -> None:
    fake = FakeKraken(
        {
            "AddOrder": lambda p: ok({"txid": ["OAAAAA-BBBBB-CCCCCC"], "descr": {"order": "x"}}),
            "CancelOrder": lambda p: ok({"count": 1, "pending": False}),
        }
    )
    clock = FakeClock()
    async with make_client(fake, clock, tier=Tier.STARTER) as client:
        client.engine_limiter.add("XBTUSD", 52)  # threshold 60 at Starter
        await client.add_order(pair="XBTUSD", side="buy", ordertype="limit", volume=Decimal("1"), price=1)
        clock.now += 1  # order is 1 s old: cancel costs +8; counter 53 - 1 + 8 = 60 fits exactly
        result = await client.cancel_order("OAAAAA-BBBBB-CCCCCC")
    assert result.count == 1
    assert clock.sleeps == []
    assert client.engine_limiter.value("XBTUSD") == pytest.approx(60)


async def test_closed_orders_iterator_paginates_with_ofs_and_skips_duplicates() -> None:
    def order(i: int) -> dict[str, Any]:
        return {"status": "closed", "vol": "1", "descr": {"pair": "XBTUSD"}, "closetm": 1688148610.0482 + i}

    total = 120
    ids = [f"O{i:03d}" for i in range(total)]

    def closed(params: dict[str, Any]) -> Any:
        ofs = int(params.get("ofs", 0))
        page = ids[ofs : ofs + 50]
        if ofs == 50:
            page = [ids[49], *page[:-1]]  # an order shifted in between pages: seen twice
        return ok({"closed": {txid: order(i) for i, txid in enumerate(page)}, "count": total})

    fake = FakeKraken({"ClosedOrders": closed})
    async with make_client(fake) as client:
        seen = [o.txid async for o in client.iter_closed_orders(trades=True)]
    assert [p.get("ofs") for _, p, _ in fake.requests] == [None, "50", "100"]
    assert all(p["trades"] == "true" for _, p, _ in fake.requests)
    assert len(seen) == len(set(seen)) == total - 1  # O099 was pushed off by the duplicate
    assert seen[:3] == ["O000", "O001", "O002"]


async def test_query_orders_sends_at_most_50_txids_per_call() -> None:
    def query(params: dict[str, Any]) -> Any:
        return ok({t: {"status": "open", "vol": "1"} for t in params["txid"].split(",")})

    fake = FakeKraken({"QueryOrders": query})
    txids = [f"T{i}" for i in range(120)]
    async with make_client(fake) as client:
        orders = await client.query_orders(txids)
    assert [len(p["txid"].split(",")) for _, p, _ in fake.requests] == [50, 50, 20]
    assert set(orders) == set(txids)


def test_encode_params_writes_decimals_plainly_and_refuses_floats() -> None:
    assert encode_params({"nonce": 1, "volume": Decimal("1E-8"), "validate": True, "x": None}, as_json=False) == (
        "nonce=1&volume=0.00000001&validate=true"
    )
    assert encode_params({"nonce": 1, "price": Decimal("27500.0")}, as_json=True) == '{"nonce":1,"price":"27500.0"}'
    with pytest.raises(TypeError, match="float"):
        encode_params({"volume": 1.25}, as_json=False)


def test_sync_facade_runs_calls_from_plain_sync_code() -> None:
    fake = FakeKraken(
        {
            "Time": lambda p: ok({"unixtime": 1688669448, "rfc1123": "Thu, 06 Jul 23 18:50:48 +0000"}),
            "Balance": lambda p: {"error": ["EOrder:Unknown order"]},
        }
    )
    with KrakenRestClientSync(
        base_url="https://kraken.test",
        api_key=KEY,
        api_secret=SECRET,
        nonce_source=ProcessNonce(),
        transport=httpx.MockTransport(fake),
    ) as client:
        assert client.server_time().unixtime == 1688669448
        with pytest.raises(errors.UnknownOrder):
            client.balance()


@pytest.mark.parametrize("result", [{"descr": {"order": "buy"}}, ["not", "an", "object"]])
async def test_add_order_success_without_a_txid_is_an_unknown_outcome(result: Any) -> None:
    fake = FakeKraken({"AddOrder": lambda p: ok(result)})
    async with make_client(fake) as client:
        with pytest.raises(errors.OrderOutcomeUnknown) as info:
            await client.add_order(pair="XBTUSD", side="sell", ordertype="market", volume=Decimal("1"), cl_ord_id="d-7")
    assert info.value.cl_ord_id == "d-7"


async def test_validate_only_add_order_returns_no_txid() -> None:
    fake = FakeKraken({"AddOrder": lambda p: ok({"descr": {"order": "sell 1.00000000 XBTUSD @ market"}})})
    async with make_client(fake) as client:
        result = await client.add_order(
            pair="XBTUSD", side="sell", ordertype="market", volume=Decimal("1"), validate=True
        )
    assert result.txids == ()
    assert fake.requests[0][1]["validate"] == "true"


def test_json_bodies_refuse_floats_and_non_finite_decimals_at_any_depth() -> None:
    with pytest.raises(TypeError, match="float"):
        encode_params({"volume": 1.25}, as_json=True)
    with pytest.raises(TypeError, match="float"):
        encode_params({"orders": [{"volume": 1.25}]}, as_json=True)
    with pytest.raises(TypeError, match="non-finite"):
        encode_params({"price": Decimal("NaN")}, as_json=True)
    assert encode_params({"txid": ("A", "B")}, as_json=True) == '{"txid":["A","B"]}'
