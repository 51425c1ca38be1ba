"""Private REST authentication (PROTOCOL.md §1.2) and WebSocket tokens, written from Kraken's description.

``API-Sign = base64(HMAC-SHA512(key=base64decode(secret), msg=uri_path + SHA256(nonce + postdata)))`` where
``postdata`` is the exact request body (form-encoded or JSON) and ``nonce`` the body's ``nonce`` field as
text.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import time
from dataclasses import dataclass
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl

from kraken_sim.errors import KrakenError

log = logging.getLogger(__name__)

MAX_NONCE = 2**64 - 1


def expected_signature(secret_b64: str, uri_path: str, nonce: str, postdata: bytes) -> str:
    digest = hashlib.sha256(nonce.encode() + postdata).digest()
    mac = hmac.new(base64.b64decode(secret_b64), uri_path.encode() + digest, hashlib.sha512)
    return base64.b64encode(mac.digest()).decode()


def parse_body(body: bytes, content_type: str) -> dict[str, Any]:
    """Form or JSON body → parameters. JSON numbers stay exact (Decimal); form values stay strings."""
    if not body:
        return {}
    if content_type.startswith("application/json"):
        try:
            parsed = json.loads(body, parse_float=Decimal)
        except (ValueError, UnicodeDecodeError) as exc:
            raise KrakenError("EGeneral:Invalid arguments") from exc
        if not isinstance(parsed, dict):
            raise KrakenError("EGeneral:Invalid arguments")
        return parsed
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise KrakenError("EGeneral:Invalid arguments") from exc
    return dict(parse_qsl(text, keep_blank_values=True))


@dataclass(slots=True)
class ApiKey:
    key: str
    secret: str
    last_nonce: int = 0


class Authenticator:
    def __init__(self, keys: dict[str, str]) -> None:
        self._keys = {k: ApiKey(k, s) for k, s in keys.items()}
        for key in self._keys.values():
            try:
                base64.b64decode(key.secret, validate=True)
            except binascii.Error as exc:
                raise ValueError(f"API secret for {key.key!r} is not valid base64") from exc

    def verify(
        self,
        *,
        uri_path: str,
        headers_key: str | None,
        headers_sign: str | None,
        body: bytes,
        params: dict[str, Any],
    ) -> str:
        """Check key, signature and nonce; return the key. Raises ``KrakenError`` with Kraken's string."""
        if not headers_key or headers_key not in self._keys:
            raise KrakenError("EAPI:Invalid key")
        api_key = self._keys[headers_key]
        nonce_value = params.get("nonce")
        if nonce_value is None or isinstance(nonce_value, bool):
            raise KrakenError("EAPI:Invalid nonce")
        nonce_text = str(nonce_value)
        if not headers_sign:
            raise KrakenError("EAPI:Invalid signature")
        expected = expected_signature(api_key.secret, uri_path, nonce_text, body)
        if not hmac.compare_digest(expected.encode(), headers_sign.strip().encode()):
            raise KrakenError("EAPI:Invalid signature")
        if not nonce_text.isdigit():
            raise KrakenError("EAPI:Invalid nonce")
        nonce = int(nonce_text)
        if nonce > MAX_NONCE or nonce <= api_key.last_nonce:
            log.info("rejected nonce %s for key %s (last %s)", nonce, api_key.key, api_key.last_nonce)
            raise KrakenError("EAPI:Invalid nonce")
        api_key.last_nonce = nonce
        return api_key.key


@dataclass(slots=True)
class _Token:
    token: str
    issued: float
    connections: set[int]


class TokenStore:
    """GetWebSocketsToken tokens: usable to connect for ``ttl`` seconds, then only on connections that used
    them in time ("the token persists for the lifetime of that connection")."""

    def __init__(self, ttl: float, clock: Any = time.monotonic) -> None:
        self._ttl = ttl
        self.clock = clock  # replaceable, so tests can move time
        self._tokens: dict[str, _Token] = {}

    def issue(self, token: str) -> None:
        self._prune()
        self._tokens[token] = _Token(token, self.clock(), set())

    def check(self, token: object, connection_id: int) -> bool:
        if not isinstance(token, str):
            return False
        entry = self._tokens.get(token)
        if entry is None:
            return False
        if connection_id in entry.connections:
            return True
        if self.clock() - entry.issued > self._ttl:
            return False
        entry.connections.add(connection_id)
        return True

    def forget_connection(self, connection_id: int) -> None:
        for entry in self._tokens.values():
            entry.connections.discard(connection_id)

    def _prune(self) -> None:
        now = self.clock()
        stale = [t for t, e in self._tokens.items() if not e.connections and now - e.issued > self._ttl]
        for t in stale:
            del self._tokens[t]
