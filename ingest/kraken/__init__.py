"""Kraken protocol layer: plain Python and asyncio, no Django, nothing else of the project.

Modules (one folder per exchange, after hummingbot):

- ``constants``: URLs, paths, limits.
- ``auth``: ``sign`` (API-Sign) and nonce sources (in-process and cross-process).
- ``errors``: Kraken error strings → typed exceptions with ``retryable``.
- ``messages``: exact decoding of WebSocket v2 frames and typed messages.
- ``book``: the order book with checksum verification.
- ``ratelimit``: models of the REST call counter and the per-pair trading-engine counter.
- ``rest`` / ``rest_types``: the REST client (async, with a sync facade) and its typed results.
- ``ws``: the WebSocket v2 client (public and private endpoints, reconnect/resubscribe, watchdog, books,
  sequence tracking, trading over the socket).
- ``replay``: ``python -m ingest.kraken.replay`` to verify a recorded book stream.

Submodules are imported explicitly (``from ingest.kraken.book import OrderBook``) so that the hot path does
not pull in the HTTP client.
"""
