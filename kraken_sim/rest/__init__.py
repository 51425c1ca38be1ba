"""Kraken's REST API (PROTOCOL.md §1): ``api`` (routes, envelope, authentication, counters), ``public`` (market
data), ``account`` (balances, orders, trades, ledger), ``trading`` (orders, cancels, the dead man's switch) and
``params`` (reading request parameters and pair names)."""

from kraken_sim.rest.api import RestApi

__all__ = ["RestApi"]
