"""Kraken WebSocket v2 client (PROTOCOL.md §2 and §4): public market data, the private ``executions`` and
``balances`` channels, and trading (``add_order`` / ``cancel_order`` / ``cancel_all``, and the dead man's switch
``cancel_all_orders_after``) over the private socket. Plain Python, asyncio and ``websockets``; nothing of the
project outside ``ingest/kraken/``.

Modules (import from the one that defines a name, e.g. ``from ingest.kraken.ws.client import KrakenWsClient``):

- ``client``: :class:`~ingest.kraken.ws.client.KrakenWsClient`, what callers use; routes frames.
- ``types``: states, configuration (``WsConfig``), events and acks, counters (``WsStats``), listener shapes.
- ``reconnect``: the reconnect policy and the connection attempt limiter.
- ``connection``: one endpoint's connection loop, watchdog and keepalive; its subscriptions.
- ``context``: what the parts of one client share (config, counters, listeners, request ids).
- ``requests``: requests and their answers (timeouts, outcome unknown).
- ``subscriptions``: subscribe, unsubscribe, resubscribe on reconnect, resync for a fresh snapshot.
- ``market``: books (checksums, resync), instruments, trades, ticker, ohlc, book streams.
- ``user_stream``: the private channels, their sequence tracking, gaps and reconciliation requests.
- ``trading``: add_order, cancel_order, cancel_all, cancel_all_orders_after.

Errors (``NotConnected``, ``RequestTimeout`` with the rest) are in :mod:`ingest.kraken.errors`.
"""
