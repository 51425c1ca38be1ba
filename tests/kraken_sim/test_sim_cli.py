"""``python -m kraken_sim`` as a subprocess: the JSON line of bound ports, a working exchange, clean exit."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from pathlib import Path

import httpx
import websockets

PROJECT = Path(__file__).resolve().parents[2]


async def _start(*args: str) -> asyncio.subprocess.Process:
    env = {**os.environ, "PYTHONPATH": str(PROJECT)}
    return await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kraken_sim",
        *args,
        cwd=PROJECT,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )


async def test_cli_reports_bound_ports_and_serves_until_sigterm() -> None:
    proc = await _start(
        "--rest-port",
        "0",
        "--ws-port",
        "0",
        "--ws-auth-port",
        "0",
        "--seed",
        "3",
        "--market",
        "generate",
        "--rate",
        "20",
        "--warmup",
        "50",
        "--tier",
        "pro",
        "--balances",
        "USD=5000,BTC=0.5",
        "--log-level",
        "WARNING",
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), 20)
        info = json.loads(line)
        assert {"rest_url", "ws_url", "ws_auth_url", "rest_port", "ws_port", "ws_auth_port"} <= set(info)
        assert len({info["rest_port"], info["ws_port"], info["ws_auth_port"]}) == 3
        async with httpx.AsyncClient(base_url=info["rest_url"]) as client:
            pairs = (await client.get("/0/public/AssetPairs")).json()["result"]
            state = (await client.get("/_sim/state")).json()
        assert set(pairs) == {"XXBTZUSD", "XETHZUSD"}
        assert state["balances"]["USD"]["balance"] == "5000.0000"
        async with websockets.connect(info["ws_url"]) as ws:
            status = json.loads(await asyncio.wait_for(ws.recv(), 5))
        assert status["channel"] == "status"
    finally:
        proc.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(proc.wait(), 20)
    assert code == 0


async def test_cli_refuses_an_unknown_instrument() -> None:
    proc = await _start("--instruments", "BTC/USD,DOGE/JPY")
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode == 2
    assert b"unknown instrument" in err
