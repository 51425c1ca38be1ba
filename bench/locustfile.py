"""Locust load of API reads for `bench/bench_api_load.py` (run only as a subprocess: locust monkey-patches the
standard library with gevent on import, so nothing of the project or its tests imports this file).

    .venv/bin/locust -f bench/locustfile.py --headless -u 20 -r 20 --run-time 5m --host http://127.0.0.1:PORT \\
        --csv /tmp/load --only-summary

Needs `GALFRIDAY_LOAD_FIXTURE`: a JSON file written by the bench with the read-only users' API tokens and the ids of
real rows (orders, reconciliation runs). Each simulated client holds one token (round robin) and sends
`GALFRIDAY_LOAD_RPS_PER_USER` requests per second (constant throughput), as a proxy would forward them
(`X-Forwarded-Proto: https`, so the production settings' HTTPS redirect does not apply). The mix: list, detail and
health reads, weighted as an operator's dashboard and an integration poll them.
"""

from __future__ import annotations

import itertools
import json
import os
import random

from locust import FastHttpUser, constant_throughput, task

with open(os.environ["GALFRIDAY_LOAD_FIXTURE"]) as f:
    FIXTURE = json.load(f)
TOKENS = itertools.cycle(FIXTURE["tokens"])
ORDER_IDS = FIXTURE["order_ids"]
RUN_IDS = FIXTURE["run_ids"]
RPS_PER_USER = float(os.environ.get("GALFRIDAY_LOAD_RPS_PER_USER", "10"))


class ReadOnlyClient(FastHttpUser):
    wait_time = constant_throughput(RPS_PER_USER)

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Token {next(TOKENS)}", "X-Forwarded-Proto": "https"}

    def get(self, path: str, name: str) -> None:
        self.client.get(path, headers=self.headers, name=name)

    @task(20)
    def orders(self) -> None:
        self.get("/api/trading/orders/?limit=50", "orders list")

    @task(20)
    def order(self) -> None:
        self.get(f"/api/trading/orders/{random.choice(ORDER_IDS)}/", "order detail")

    @task(12)
    def fills(self) -> None:
        self.get("/api/trading/fills/?limit=50", "fills list")

    @task(10)
    def decisions(self) -> None:
        self.get("/api/trading/decisions/?limit=50", "decisions list")

    @task(8)
    def positions(self) -> None:
        self.get("/api/trading/positions/", "positions")

    @task(8)
    def balances(self) -> None:
        self.get("/api/trading/balances/", "balances")

    @task(6)
    def state(self) -> None:
        self.get("/api/trading/state/", "trading state")

    @task(6)
    def run_list(self) -> None:
        self.get("/api/reconciliation/runs/?limit=50", "reconciliation runs list")

    @task(5)
    def run_detail(self) -> None:
        self.get(f"/api/reconciliation/runs/{random.choice(RUN_IDS)}/", "reconciliation run detail")

    @task(5)
    def health(self) -> None:
        self.get("/api/health/", "health")
