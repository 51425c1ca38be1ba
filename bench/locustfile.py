"""Locust load of API reads for `bench/bench_api_load.py` (run only as a subprocess: locust monkey-patches the
standard library with gevent on import, so nothing of the project or its tests imports this file).

    .venv/bin/locust -f bench/locustfile.py --headless -u 20 -r 20 --run-time 5m --host http://127.0.0.1:PORT \\
        --csv /tmp/load --only-summary

Needs `GALFRIDAY_LOAD_FIXTURE`: a JSON file written by the bench with the read-only users' API tokens and the ids of
real rows (orders, reconciliation runs). Each simulated client holds one token (round robin) and sends
`GALFRIDAY_LOAD_RPS_PER_USER` requests per second (constant throughput), as a proxy would forward them
(`X-Forwarded-Proto: https`, so the production settings' HTTPS redirect does not apply). The mix
(`bench/api_load_mix.py`, which `bench/profile_api_reads.py` measures in-process too): list, detail and health
reads, weighted as an operator's dashboard and an integration poll them.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

from locust import FastHttpUser, constant_throughput

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.api_load_mix import MIX  # plain data: the mix the profile measures too

with open(os.environ["GALFRIDAY_LOAD_FIXTURE"]) as f:
    FIXTURE = json.load(f)
TOKENS = itertools.cycle(FIXTURE["tokens"])
ORDER_IDS = FIXTURE["order_ids"]
RUN_IDS = FIXTURE["run_ids"]
RPS_PER_USER = float(os.environ.get("GALFRIDAY_LOAD_RPS_PER_USER", "10"))


def read(name: str, template: str) -> Callable[[ReadOnlyClient], None]:
    def task(user: ReadOnlyClient) -> None:
        path = template.format(order_id=random.choice(ORDER_IDS), run_id=random.choice(RUN_IDS))
        user.client.get(path, headers=user.headers, name=name)

    task.__name__ = name.replace(" ", "_")
    return task


class ReadOnlyClient(FastHttpUser):
    wait_time = constant_throughput(RPS_PER_USER)
    # as locust expands a {task: weight} dict: each task `weight` times in the list it draws from
    tasks = [task for name, weight, template in MIX for task in [read(name, template)] * weight]

    def on_start(self) -> None:
        self.headers = {"Authorization": f"Token {next(TOKENS)}", "X-Forwarded-Proto": "https"}
