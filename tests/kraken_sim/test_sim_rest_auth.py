"""Private REST authentication: Kraken's signature, nonce and key checks, and the error envelope."""

from __future__ import annotations

import json
import urllib.parse
from types import SimpleNamespace
from typing import Any

import httpx


def test_signing_helper_reproduces_krakens_published_test_vector(kit: SimpleNamespace) -> None:
    secret = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
    payload = "nonce=1616492376594&ordertype=limit&pair=XBTUSD&price=37500&type=buy&volume=1.25"
    expected = "4/dpxb3iT4tp/ZCVEwSnEsLxx0bqyhLpdfOpc6fn7OR8+UClSV5n9E6aSS8MPtnRfp32bAb0nmbRn6H8ndwLUQ=="
    assert kit.sign(secret, "/0/private/AddOrder", "1616492376594", payload) == expected


async def test_correctly_signed_form_request_is_accepted(rest: Any) -> None:
    body = await rest.private("Balance")
    assert body["error"] == []
    assert set(body["result"]) == {"ZUSD", "XXBT", "XETH"}


async def test_correctly_signed_json_request_is_accepted(rest: Any) -> None:
    body = await rest.private("Balance", as_json=True)
    assert body["error"] == []
    assert body["result"]["ZUSD"] == "100000.0000"


async def test_signature_with_wrong_secret_is_rejected(rest: Any) -> None:
    wrong = "a2V5LW5vdC10aGUtb25lLXRoZS1zaW11bGF0b3Itd2FudHM="
    body = await rest.private("Balance", secret=wrong)
    assert body == {"error": ["EAPI:Invalid signature"]}


async def test_signature_over_a_different_body_is_rejected(rest: Any, kit: SimpleNamespace) -> None:
    path = "/0/private/Balance"
    nonce = "99999999999999999"
    signed_body = urllib.parse.urlencode({"nonce": nonce})
    sent_body = urllib.parse.urlencode({"nonce": nonce, "extra": "1"})
    sign = kit.sign(rest.secret, path, nonce, signed_body)
    r = await rest.http.post(
        path,
        content=sent_body,
        headers={"API-Key": rest.key, "API-Sign": sign, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.json() == {"error": ["EAPI:Invalid signature"]}


async def test_unknown_api_key_is_rejected_without_result(rest: Any) -> None:
    body = await rest.private("Balance", key="somebody-else")
    assert body == {"error": ["EAPI:Invalid key"]}


async def test_missing_signature_header_is_rejected(rest: Any) -> None:
    body = urllib.parse.urlencode({"nonce": "123456789012"})
    r = await rest.http.post(
        "/0/private/Balance",
        content=body,
        headers={"API-Key": rest.key, "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.json() == {"error": ["EAPI:Invalid signature"]}


async def test_replayed_nonce_is_rejected(rest: Any) -> None:
    nonce = 5_000_000_000_000_000_000
    first = await rest.private("Balance", nonce=nonce)
    replay = await rest.private("Balance", nonce=nonce)
    assert first["error"] == []
    assert replay == {"error": ["EAPI:Invalid nonce"]}


async def test_nonce_lower_than_the_last_one_is_rejected(rest: Any) -> None:
    await rest.ok("Balance", nonce=6_000_000_000_000_000_000)
    body = await rest.private("Balance", nonce=5_999_999_999_999_999_999)
    assert body == {"error": ["EAPI:Invalid nonce"]}


async def test_request_with_a_bad_signature_does_not_consume_its_nonce(rest: Any) -> None:
    nonce = 7_000_000_000_000_000_000
    bad = await rest.private("Balance", nonce=nonce, secret="d3Jvbmc=")
    good = await rest.private("Balance", nonce=nonce)
    assert bad == {"error": ["EAPI:Invalid signature"]}
    assert good["error"] == []


async def test_json_body_signature_uses_the_exact_body_text(rest: Any, kit: SimpleNamespace) -> None:
    path = "/0/private/Balance"
    body = json.dumps({"nonce": 8_000_000_000_000_000_000})
    sign = kit.sign(rest.secret, path, "8000000000000000000", body)
    r = await rest.http.post(
        path,
        content=body,
        headers={"API-Key": rest.key, "API-Sign": sign, "Content-Type": "application/json"},
    )
    assert r.json()["error"] == []


async def test_unknown_private_method_gets_kraken_error_in_envelope(rest: Any) -> None:
    body = await rest.private("NoSuchMethod")
    assert body == {"error": ["EGeneral:Unknown method"]}


async def test_errors_come_with_http_200(rest: Any) -> None:
    r = await rest.http.post(
        "/0/private/Balance",
        content="nonce=1",
        headers={"API-Key": "nobody", "API-Sign": "x", "Content-Type": "application/x-www-form-urlencoded"},
    )
    assert r.status_code == 200
    assert r.json() == {"error": ["EAPI:Invalid key"]}


async def test_public_call_needs_no_key(rest: Any) -> None:
    async with httpx.AsyncClient(base_url=str(rest.http.base_url)) as anonymous:
        r = await anonymous.get("/0/public/Time")
    body = r.json()
    assert body["error"] == []
    assert isinstance(body["result"]["unixtime"], int)
