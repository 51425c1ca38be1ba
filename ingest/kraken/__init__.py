"""Kraken protocol layer: plain Python and asyncio, no Django, nothing else of the project.

Modules (one folder per exchange, after hummingbot):

- ``constants``: URLs, paths, limits.
- ``auth``: ``sign`` (API-Sign) and nonce sources (in-process and cross-process).
- ``errors``: Kraken error strings → typed exceptions with ``retryable``.
- ``wire``: what values look like on the wire for both clients: RFC 3339 times, JSON request bodies.
- ``assets``: asset names (REST ids and altnames → WebSocket v2 codes).
- ``messages``: exact decoding of WebSocket v2 frames and typed messages.
- ``book``: the order book with checksum verification.
- ``ratelimit``: models of the REST call counter and the per-pair trading-engine counter.
- ``rest`` / ``rest_types``: the REST client (async, with a sync facade) and its typed results.
- ``ws/``: the WebSocket v2 client, a package (``client``, ``types``, ``reconnect``, ``connection``, ``context``,
  ``requests``, ``subscriptions``, ``market``, ``user_stream``, ``trading``): public and private endpoints,
  reconnect/resubscribe, watchdog, books, sequence tracking, trading over the socket.
- ``replay``: ``python -m ingest.kraken.replay`` to verify a recorded book stream.

Submodules are imported explicitly (``from ingest.kraken.book import OrderBook``) so that the hot path does
not pull in the HTTP client.
"""
