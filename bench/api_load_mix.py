"""The read mix of the API load bench (issue 18), in one place: `bench/locustfile.py` sends it and
`bench/profile_api_reads.py` measures each endpoint's server cost in-process. Plain data: importing it pulls in
neither locust (it gevent-patches on import) nor Django.

Each entry: the name locust reports, its weight, and the path (`{order_id}` and `{run_id}` are filled with real
rows' ids)."""

from __future__ import annotations

MIX: tuple[tuple[str, int, str], ...] = (
    ("orders list", 20, "/api/trading/orders/?limit=50"),
    ("order detail", 20, "/api/trading/orders/{order_id}/"),
    ("fills list", 12, "/api/trading/fills/?limit=50"),
    ("decisions list", 10, "/api/trading/decisions/?limit=50"),
    ("positions", 8, "/api/trading/positions/"),
    ("balances", 8, "/api/trading/balances/"),
    ("trading state", 6, "/api/trading/state/"),
    ("reconciliation runs list", 6, "/api/reconciliation/runs/?limit=50"),
    ("reconciliation run detail", 5, "/api/reconciliation/runs/{run_id}/"),
    ("health", 5, "/api/health/"),
)
