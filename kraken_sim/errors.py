"""The simulator's exceptions: Kraken's error strings (PROTOCOL.md §1.4) as one type, and a bad configuration."""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration the simulator refuses (the command line exits 2 with its text)."""


class KrakenError(Exception):
    """An error Kraken reports in the ``error`` array (REST) or the ``error`` string (WebSocket)."""

    def __init__(self, code: str) -> None:
        super().__init__(code)
        self.code = code


INVALID_ARGUMENTS = "EGeneral:Invalid arguments"
UNKNOWN_PAIR = "EQuery:Unknown asset pair"
UNKNOWN_ORDER = "EOrder:Unknown order"
INSUFFICIENT_FUNDS = "EOrder:Insufficient funds"
ORDER_MINIMUM = "EOrder:Order minimum not met"
COST_MINIMUM = "EOrder:Cost minimum not met"
TICK_SIZE = "EOrder:Tick size check failed"
INVALID_PRICE = "EOrder:Invalid price"
ORDERS_LIMIT = "EOrder:Orders limit exceeded"
ORDER_RATE_LIMIT = "EOrder:Rate limit exceeded"
API_RATE_LIMIT = "EAPI:Rate limit exceeded"
# Third-party clients match this string for a repeated cl_ord_id; not confirmed in Kraken's docs.
DUPLICATE_ORDER = "EOrder:Duplicate order"
UNAVAILABLE = "EService:Unavailable"
CANCEL_ONLY = "EService:Market in cancel_only mode"
POST_ONLY = "EService:Market in post_only mode"
UNKNOWN_METHOD = "EGeneral:Unknown method"
# Margin is not simulated: Kraken's answers for an account that cannot trade on margin (PROTOCOL.md §1.4).
CANNOT_OPEN_POSITION = "EOrder:Cannot open position"
REDUCE_ONLY_NO_POSITION = "EOrder:Reduce only:No position exists"
UNKNOWN_ASSET = "EQuery:Unknown asset"
INTERNAL_ERROR = "EGeneral:Internal error"


def invalid(field: str) -> str:
    """``EGeneral:Invalid arguments:<field>``, Kraken's form for one bad or unsupported argument."""
    return f"{INVALID_ARGUMENTS}:{field}"
