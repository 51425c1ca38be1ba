"""Kraken-style identifiers, drawn from a seeded generator so a seed reproduces a run."""

from __future__ import annotations

import random
import secrets

_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"


class IdGenerator:
    def __init__(self, seed: int) -> None:
        self._rng = random.Random(f"kraken-sim-ids-{seed}")
        self._public_trade_ids: dict[str, int] = {}
        self._participant_seq = 0

    def _txid(self, prefix: str) -> str:
        chars = "".join(self._rng.choice(_ALPHABET) for _ in range(16))
        return f"{prefix}{chars[:5]}-{chars[5:10]}-{chars[10:16]}"

    def order_id(self) -> str:
        """``OUF4EM-FRGI2-MQMWZD``."""
        return self._txid("O")

    def trade_txid(self) -> str:
        """``THVRQM-33VKH-UCI7BS`` (REST TradesHistory key, WS ``exec_id``)."""
        return self._txid("T")

    def ledger_id(self) -> str:
        return self._txid("L")

    def participant_order_id(self) -> str:
        """Orders of the simulated market participants; never shown to the account."""
        self._participant_seq += 1
        return f"M{self._participant_seq}"

    def public_trade_id(self, symbol: str) -> int:
        """Kraken's ``trade_id``: an integer sequence per book."""
        current = self._public_trade_ids.get(symbol, 0) + 1
        self._public_trade_ids[symbol] = current
        return current

    def skip_public_trade_ids(self, symbol: str, count: int) -> int:
        """Reserve the next ``count`` trade ids of ``symbol`` (a back-dated history); returns the first."""
        first = self._public_trade_ids.get(symbol, 0) + 1
        self._public_trade_ids[symbol] = first + count - 1
        return first

    def connection_id(self) -> int:
        """Kraken's ``connection_id`` is an unsigned 64-bit integer, often above 2**63."""
        return self._rng.getrandbits(64) | (1 << 63)

    @staticmethod
    def ws_token() -> str:
        """A WebSocket token: unpredictable, so not from the seeded generator."""
        return secrets.token_urlsafe(32)[:43]
