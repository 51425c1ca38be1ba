"""Kraken endpoints and protocol constants (PROTOCOL.md §1.1, §2.1)."""

from __future__ import annotations

REST_URL = "https://api.kraken.com"
REST_API_VERSION = "0"
PUBLIC_PATH = f"/{REST_API_VERSION}/public/"
PRIVATE_PATH = f"/{REST_API_VERSION}/private/"

WS_PUBLIC_URL = "wss://ws.kraken.com/v2"
WS_PRIVATE_URL = "wss://ws-auth.kraken.com/v2"

USER_AGENT = "gal-friday/0.1 (python-httpx)"

DEFAULT_TIMEOUT_S = 10.0
PAGE_SIZE = 50  # ClosedOrders / TradesHistory page size
QUERY_ORDERS_BATCH = 50  # QueryOrders: at most 50 txids per call

BOOK_DEPTHS = (10, 25, 100, 500, 1000)
OHLC_INTERVALS = (1, 5, 15, 30, 60, 240, 1440, 10080, 21600)
