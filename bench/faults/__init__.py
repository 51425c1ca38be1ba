"""The fault campaign of issue 18 (`bench/bench_fault_campaign.py`): a live-mode system trading on the simulator,
its processes really running, faults injected at seeded random points, and the invariants checked after each round.

- `services`: the campaign's own Redis and InfluxDB servers (on its own ports and data directories, so restarting
  or stopping them touches nobody else's), child processes in their own process group, PostgreSQL helpers.
- `system`: the system under test: `python -m kraken_sim`, `manage.py ingest`, two Celery workers and beat, with
  `TRADING_MODE=live` against the simulator, and the set-up of the database they share.
- `predictor`: the deterministic predictor the decisions use (buy, then sell back, bar after bar).
- `faults`: what a round can inject and how each is undone.
- `checks`: the invariants: no duplicate order, no lost fill, books equal the simulator's account, no hole in the
  bars, a clean reconciliation.
"""
