"""Simulator → client throughput over loopback WebSocket, checksums verified on every message.

`python -m kraken_sim --market replay:<the real recording> --rate 0` runs in a child process pinned to CPU 1 and,
on the admin `burst` action, sends the recording's frames verbatim (snapshot + 509 updates, repeated) as fast
as the socket takes them; the client (`KrakenWsClient`, this process, pinned to CPU 0) decodes, applies and
verifies every frame. Prints JSON: messages, seconds, messages/s, checksum mismatches.

    .venv/bin/python bench/bench_sim_burst.py [--repeat 400]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from ingest.kraken.ws.client import KrakenWsClient  # noqa: E402
from ingest.kraken.ws.types import WsConfig  # noqa: E402

RECORDING = "kraken/recordings/book-v2-btcusd-depth10.jsonl"


def recording() -> Path:
    for base in (ROOT.parent / "shared", Path("/work/shared")):
        if (base / RECORDING).is_file():
            return base / RECORDING
    raise SystemExit("shared/kraken/recordings not found beside the repository")


async def main(repeat: int) -> dict[str, object]:
    with contextlib.suppress(OSError):
        os.sched_setaffinity(0, {0})
    sim = subprocess.Popen(
        ["taskset", "-c", "1", sys.executable, "-m", "kraken_sim", "--market", f"replay:{recording()}",
         "--rate", "0", "--warmup", "0", "--log-level", "WARNING"],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    assert sim.stdout is not None
    urls = json.loads(sim.stdout.readline())
    client = KrakenWsClient(WsConfig(public_url=urls["ws_url"], private_url=urls["ws_auth_url"]))
    try:
        await client.subscribe_book(["BTC/USD"], depth=10, precisions={"BTC/USD": (1, 8)})
        book = client.book("BTC/USD")
        assert book is not None
        base = book.stats.checksums_verified
        total = 510 * repeat
        first_seen: list[float] = []

        def seen(_book: object, _event: object) -> None:
            if not first_seen:
                first_seen.append(time.perf_counter())

        client.on_book(seen)
        async with httpx.AsyncClient(base_url=urls["admin_url"]) as admin:
            await admin.post("/market", json={"action": "burst", "symbol": "BTC/USD", "repeat": repeat})
        while book.stats.checksums_verified - base < total:
            await asyncio.sleep(0.005)
        elapsed = time.perf_counter() - first_seen[0]
        return {
            "benchmark": "simulator burst -> client, checksums verified",
            "messages": total,
            "seconds": round(elapsed, 3),
            "messages_per_s": int(total / elapsed),
            "checksum_mismatches": book.stats.checksum_mismatches,
            "python": sys.version.split()[0],
        }
    finally:
        await client.close()
        sim.terminate()
        sim.wait(timeout=10)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=400, help="times the 510-frame recording is sent")
    print(json.dumps(asyncio.run(main(parser.parse_args().repeat)), indent=2))
