"""WebSocket v2 (PROTOCOL.md §2): ``hub`` (the two servers, connections, routing), ``connection`` (a socket's
queue, writer and heartbeats; the subscription registry), ``public`` (market data feeds), ``private``
(``executions`` and ``balances``) and ``trading`` (``add_order``, cancels, the dead man's switch)."""

from kraken_sim.ws.hub import WsHub

__all__ = ["WsHub"]
