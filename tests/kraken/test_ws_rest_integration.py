"""The REST client (``ingest/kraken/rest.py``, which also feeds the WebSocket client its tokens) against the
local simulator over real sockets: signed private calls, the typed authentication errors, nonces shared by two
clients through one nonce file, and the client-side rate models keeping bursts under the exchange's limits
(REST call counter, and the per-pair trading-engine counter shared by REST and WebSocket trading)."""

from __future__ import annotations

import base64
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from ingest.kraken.auth import FileLockNonce, ProcessNonce
from ingest.kraken.errors import (
    ApiRateLimitExceeded,
    AuthenticationError,
    InvalidNonce,
    TradingRateLimitExceeded,
)
from ingest.kraken.ratelimit import RestCallCounter, TradingEngineLimiter
from ingest.kraken.ws.client import KrakenWsClient
from ingest.kraken.ws.types import WsConfig
from ingest.kraken.ws.user_stream import token_provider_from
from kraken_sim import Tier

# Small limits with a fast decay, so a burst of ten calls crosses them and the model's waits stay short.
TIGHT = Tier("tight", Decimal(5), Decimal(5), Decimal(4), Decimal(4), 1000)
# The client's models keep one unit of headroom below the exchange's limits: the exchange counts a call when
# it arrives, and arrival-time jitter (even on loopback) can make it see two calls closer together than they
# were sent, so a model running exactly at the limit is refused now and then.
REST_MODEL: dict[str, Any] = {"maximum": 4, "decay_per_s": 5}
ENGINE_MODEL: dict[str, Any] = {"threshold": 3, "decay_per_s": 4}


async def burst(calls: int, call: Any) -> None:
    for _ in range(calls):
        await call()


@pytest.fixture
async def sim(make_sim: Any) -> Any:
    return await make_sim(market="none")


async def test_signed_private_calls_work_form_and_json(rest: Any, make_rest: Any) -> None:
    balances = await rest.balance()
    assert (balances["ZUSD"], balances["XXBT"], balances["XETH"]) == (Decimal(100000), Decimal(1), Decimal(10))
    placed = await rest.add_order(
        pair="XBTUSD", side="buy", ordertype="limit", volume=Decimal("0.01"), price=Decimal("50000.0"), cl_ord_id="r1"
    )
    (txid,) = placed.txids
    assert placed.description == "buy 0.01000000 XBTUSD @ limit 50000.0"
    assert list(await rest.open_orders(cl_ord_id="r1")) == [txid]
    assert (await rest.cancel_order(txid)).count == 1
    assert (await rest.query_orders([txid]))[txid].status == "canceled"
    token = await rest.websockets_token()
    assert token.token
    assert token.expires == 900
    as_json = make_rest(json_body=True)
    assert (await as_json.balance())["ZUSD"] == Decimal(100000)


async def test_bad_credentials_are_the_typed_authentication_error(make_rest: Any) -> None:
    wrong_secret = make_rest(api_secret=base64.b64encode(b"not the secret" * 4).decode())
    with pytest.raises(AuthenticationError) as bad_signature:
        await wrong_secret.balance()
    assert bad_signature.value.error == "EAPI:Invalid signature"
    assert bad_signature.value.retryable is False
    wrong_key = make_rest(api_key="somebody-else")
    with pytest.raises(AuthenticationError) as bad_key:
        await wrong_key.balance()
    assert bad_key.value.error == "EAPI:Invalid key"


async def test_two_clients_sharing_a_nonce_file_stay_valid_even_with_a_lagging_clock(
    make_rest: Any, tmp_path: Path
) -> None:
    path = tmp_path / "kraken.nonce"
    first = make_rest(nonce_source=FileLockNonce(path))
    # The second "process" has a clock far behind; the shared file still hands it increasing nonces.
    second = make_rest(nonce_source=FileLockNonce(path, clock=lambda: 1_000))
    for i in range(12):
        await (first if i % 2 == 0 else second).open_orders()
    assert first.stats["nonce_retries"] == 0
    assert second.stats["nonce_retries"] == 0
    # Control: the same lagging clock without the shared file is refused (after the client's one retry).
    alone = make_rest(nonce_source=ProcessNonce(clock=lambda: 1_000))
    with pytest.raises(InvalidNonce):
        await alone.open_orders()
    assert alone.stats["nonce_retries"] == 1


async def test_rest_call_model_keeps_a_burst_under_the_exchange_counter(make_sim: Any, make_rest: Any) -> None:
    modelled_sim = await make_sim(market="none", tier=TIGHT)
    modelled = make_rest(modelled_sim, rest_counter=RestCallCounter(**REST_MODEL))
    await burst(10, modelled.open_orders)  # any EAPI:Rate limit exceeded would raise here
    assert modelled.rest_counter.waits > 0  # the model made it wait instead

    # The same burst without the model is refused by the exchange.
    raw_sim = await make_sim(market="none", tier=TIGHT)
    unmodelled = make_rest(raw_sim)
    with pytest.raises(ApiRateLimitExceeded) as refused:
        await burst(10, unmodelled.open_orders)
    assert refused.value.error == "EAPI:Rate limit exceeded"


ORDER = {"pair": "XBTUSD", "side": "buy", "ordertype": "limit", "volume": Decimal("0.01"), "price": Decimal("50000.0")}


async def test_engine_model_keeps_a_burst_of_orders_under_the_pair_counter(make_sim: Any, make_rest: Any) -> None:
    modelled_sim = await make_sim(market="none", tier=TIGHT)
    modelled = make_rest(modelled_sim, engine_limiter=TradingEngineLimiter(**ENGINE_MODEL))
    await burst(8, lambda: modelled.add_order(**ORDER))
    assert modelled.engine_limiter.counter("XBTUSD").waits > 0
    assert len(await modelled.open_orders()) == 8

    raw_sim = await make_sim(market="none", tier=TIGHT)
    unmodelled = make_rest(raw_sim)
    with pytest.raises(TradingRateLimitExceeded) as refused:
        await burst(8, lambda: unmodelled.add_order(**ORDER))
    assert refused.value.error == "EOrder:Rate limit exceeded"


@pytest.mark.parametrize("modelled", [True, False])
async def test_websocket_orders_share_the_engine_model(make_sim: Any, make_rest: Any, modelled: bool) -> None:
    tight_sim = await make_sim(market="none", tier=TIGHT)
    limiter = TradingEngineLimiter(**ENGINE_MODEL) if modelled else None
    config = WsConfig(public_url=tight_sim.ws_url, private_url=tight_sim.ws_auth_url)
    tokens = token_provider_from(make_rest(tight_sim))
    order: dict[str, Any] = {"symbol": "BTC/USD", "side": "buy", "order_type": "limit", "order_qty": Decimal("0.01")}
    async with KrakenWsClient(config, token_provider=tokens, engine_limiter=limiter) as client:

        async def place() -> None:
            await client.add_order(**order, limit_price=Decimal("50000.0"))

        if modelled:
            await burst(8, place)
            assert limiter is not None
            assert limiter.counter("BTC/USD").waits > 0
        else:
            with pytest.raises(TradingRateLimitExceeded) as refused:
                await burst(8, place)
            assert refused.value.error == "EOrder:Rate limit exceeded"
