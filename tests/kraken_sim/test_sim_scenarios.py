"""Market scenarios with known ground truth: spec parsing, a deterministic path, a back-dated history served by
REST Trades/OHLC, the ground truth (Hamilton filter, Monte Carlo), statistics of the generated history, and the
live order flow following the path."""

from __future__ import annotations

import asyncio
import json
import math
import os
import sys
import time
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from statistics import NormalDist
from types import SimpleNamespace
from typing import Any

import httpx
import numpy as np
import pytest
from scipy.stats import norm

from kraken_sim.config import ConfigError
from kraken_sim.scenarios import (
    MINUTE_NS,
    ScenarioPath,
    forward_sums,
    ground_truth,
    hamilton_filter,
    parse_scenario,
)

PROJECT = Path(__file__).resolve().parents[2]
TICK = Decimal("0.1")  # BTC/USD


# -- the specification ------------------------------------------------------------------------------------
def test_scenario_spec_fills_defaults_and_takes_overrides() -> None:
    trend = parse_scenario("trend")
    assert trend.p == {"drift": 0.0002, "regime_minutes": 240, "vol": 0.001}
    assert trend.switch_prob == pytest.approx(1 / 240)
    custom = parse_scenario("regime_change:drift=0.0003, change_at=90,vol_mult=1.5")
    assert custom.p == {
        "drift": 0.0003, "regime_minutes": 240, "vol": 0.001, "change_at": 90, "vol_mult": 1.5, "half_life": 0,
    }  # fmt: skip
    assert [(p.name, p.start, p.drift, p.vol) for p in custom.phases()] == [
        ("before", None, 0.0003, 0.001),
        ("after", 90, 0.0, 0.0015),
    ]
    vol = parse_scenario("volatility_change")
    assert [(p.drift, p.vol) for p in vol.phases()] == [(0.0, 0.001), (0.0, 0.002)]
    assert parse_scenario(custom.text) == custom
    assert not parse_scenario("regimes").is_process


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("momentum", "unknown scenario 'momentum'"),
        ("trend:speed=2", "scenario trend has no parameter 'speed'"),
        ("random_walk:drift=0.1", "scenario random_walk has no parameter 'drift'"),
        ("trend:vol=abc", "vol='abc' is not a number"),
        ("trend:vol=-0.001", "vol=-0.001 must be in"),
        ("trend:vol=nan", "vol=nan must be in"),
        ("trend:regime_minutes=12.5", "must be a whole number"),
        ("trend:drift", "is not k=v"),
        ("trend:vol=0.001,vol=0.002", "given twice"),
        ("regimes:vol=0.1", "scenario regimes has no parameter 'vol'"),
    ],
)
def test_a_bad_scenario_spec_is_a_config_error(text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_scenario(text)


async def _run_cli(*args: str) -> tuple[int, bytes]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "kraken_sim",
        *args,
        cwd=PROJECT,
        env={**os.environ, "PYTHONPATH": str(PROJECT)},
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, err = await asyncio.wait_for(proc.communicate(), 20)
    assert proc.returncode is not None
    return proc.returncode, err


async def test_cli_refuses_a_bad_scenario_with_exit_2() -> None:
    results = await asyncio.gather(
        _run_cli("--scenario", "trend:drift=x"),
        _run_cli("--scenario", "nope"),
        _run_cli("--history-days", "3"),  # history needs a scenario
        _run_cli("--scenario", "trend", "--market", "none"),
    )
    assert [code for code, _ in results] == [2, 2, 2, 2]
    errors = [err.decode() for _, err in results]
    assert "drift='x' is not a number" in errors[0]
    assert "unknown scenario 'nope'" in errors[1]
    assert "--history-days needs a --scenario" in errors[2]
    assert "needs --market generate" in errors[3]


async def test_cli_help_lists_the_scenarios_and_their_parameters() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "kraken_sim", "--help", cwd=PROJECT, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 20)
    text = out.decode()
    for line in ("random_walk (vol=0.001)", "trend (drift=0.0002, regime_minutes=240, vol=0.001)", "regimes:"):
        assert line in text


# -- the path ---------------------------------------------------------------------------------------------
def test_same_seed_gives_the_same_minute_closes_and_another_seed_does_not() -> None:
    spec = parse_scenario("trend")
    a = ScenarioPath(spec, 7, "BTC/USD", 60000.0)
    b = ScenarioPath(spec, 7, "BTC/USD", 60000.0)
    c = ScenarioPath(spec, 8, "BTC/USD", 60000.0)
    # b is asked in another order and range: the closes are a pure function of the minute index
    tail = b.log_closes(100, 3000)
    head = b.log_closes(-20160, 99)
    whole = a.log_closes(-20160, 3000)
    assert np.array_equal(whole, np.concatenate((head, tail)))
    assert a.log_close(-1) == math.log(60000.0)  # the path ends its history at the start price
    assert not np.array_equal(whole, c.log_closes(-20160, 3000))
    assert not np.array_equal(whole, ScenarioPath(spec, 7, "ETH/USD", 60000.0).log_closes(-20160, 3000))
    # returns and states are consistent with the closes, backward and forward
    returns = a.returns(-20159, 3000)
    assert np.allclose(np.diff(whole), returns, atol=1e-12)
    states = a.states(-20160, 3000)
    assert set(np.unique(states)) == {-1, 1}
    switches = np.count_nonzero(np.diff(states))
    assert 23160 / 240 * 0.7 < switches < 23160 / 240 * 1.3
    # r_t = d s_t + sigma eps_t: what is left after the drift is N(0, sigma^2) noise, independent of the state
    noise = (returns - 0.0002 * states[1:]) / 0.001
    assert abs(noise.mean()) < 4 / math.sqrt(len(noise))
    assert abs(noise.std() - 1.0) < 0.03
    assert abs(noise[states[1:] == 1].mean() - noise[states[1:] == -1].mean()) < 8 / math.sqrt(len(noise))


def test_regime_change_equals_trend_before_its_change_and_loses_the_drift_after() -> None:
    trend = ScenarioPath(parse_scenario("trend"), 3, "BTC/USD", 60000.0)
    change = ScenarioPath(parse_scenario("regime_change:change_at=60,vol_mult=2"), 3, "BTC/USD", 60000.0)
    assert np.array_equal(trend.returns(-5000, 59), change.returns(-5000, 59))
    noise = (trend.returns(60, 5000) - 0.0002 * trend.states(60, 5000)) / 0.001
    assert np.allclose(change.returns(60, 5000), 0.002 * noise)


def test_regime_change_with_a_half_life_reverts_to_the_level_at_the_change() -> None:
    """Another learnable regime after the change: log price = level at the change + an AR(1) deviation with
    phi = 2^(-1/half_life) and innovations sigma x vol_mult (the same noise), whatever range is asked first."""
    trend = ScenarioPath(parse_scenario("trend"), 3, "BTC/USD", 60000.0)
    text = "regime_change:change_at=60,vol_mult=2,half_life=10"
    change = ScenarioPath(parse_scenario(text), 3, "BTC/USD", 60000.0)
    assert np.array_equal(trend.returns(-5000, 59), change.returns(-5000, 59))
    phi = 2 ** (-1 / 10)
    eps = (trend.returns(60, 5000) - 0.0002 * trend.states(60, 5000)) / 0.001
    x = change.log_closes(59, 5000) - change.log_close(59)
    assert x[0] == 0.0
    assert np.allclose(x[1:] - phi * x[:-1], 0.002 * eps, atol=1e-12)  # across the day blocks too
    later_first = ScenarioPath(parse_scenario(text), 3, "BTC/USD", 60000.0)
    assert np.array_equal(later_first.log_closes(3000, 5000), change.log_closes(3000, 5000))


def test_the_reversal_truth_matches_its_simulation() -> None:
    """The closed form (orthant probability of the bivariate normal forecast and return) against the path."""
    h = 15
    spec = parse_scenario("regime_change:change_at=0,vol_mult=2,half_life=15")
    after = ground_truth(spec, h)["phases"][1]
    phi = 2 ** (-1 / 15)
    assert after["phase"] == "after"
    assert after["hit_rate_optimal"] == pytest.approx(0.5 + math.asin(0.5) / math.pi, abs=1e-3)  # rho = 1/2 at h
    assert after["half_life"] == pytest.approx(15)
    path = ScenarioPath(spec, 11, "BTC/USD", 60000.0)
    x = path.log_closes(500, 400_000) - path.log_close(-1)  # after 500 minutes: stationary
    forecast, realised = -(1 - phi**h) * x[:-h], x[h:] - x[:-h]
    hits = np.sign(forecast) == np.sign(realised)
    se = math.sqrt(0.25 * 2 * h / len(hits))  # overlapping windows: ~ n / (2h) independent decisions
    assert abs(hits.mean() - after["hit_rate_optimal"]) < 4 * se
    long = np.where(forecast > 0, realised, 0.0).mean()
    assert long == pytest.approx(after["expected_return_optimal_long"], rel=0.1)
    with pytest.raises(ConfigError, match="half_life"):
        parse_scenario("regime_change:half_life=-1")


# -- history through REST ---------------------------------------------------------------------------------
async def _page_all(client: httpx.AsyncClient, pair: str) -> list[list[Any]]:
    rows: list[list[Any]] = []
    since = "0"
    while True:
        r = await client.get("/0/public/Trades", params={"pair": pair, "since": since})
        body = json.loads(r.text, parse_float=str)
        assert body["error"] == []
        result = body["result"]
        page = result[next(k for k in result if k != "last")]
        rows.extend(page)
        if len(page) < 1000:
            return rows
        since = result["last"]
        assert int(since) // 100_000 == _ns(page[-1][2]) // 100_000  # the ns cursor of the last row (0.1 ms shown)


def _ns(time_text: str) -> int:
    seconds, _, frac = time_text.partition(".")
    return int(seconds) * 10**9 + int(frac.ljust(9, "0"))


async def test_history_paged_through_rest_trades_reproduces_the_path_closes_for_14_days(make_sim: Any) -> None:
    sim = await make_sim(market="generate", scenario="trend", history_days=14, seed=5)
    origin_minute = sim.market.origin_ns // MINUTE_NS
    async with httpx.AsyncClient(base_url=sim.rest_url, timeout=30.0) as client:
        rows = await _page_all(client, "XBTUSD")
        r = await client.get("/0/public/Trades", params={"pair": "XBTUSD"})
        latest = json.loads(r.text, parse_float=str)["result"]
        ohlc = (await client.get("/0/public/OHLC", params={"pair": "XBTUSD", "interval": 1})).json()["result"]
        hourly = (await client.get("/0/public/OHLC", params={"pair": "XBTUSD", "interval": 60})).json()["result"]
        ticker = (await client.get("/0/public/Ticker", params={"pair": "XBTUSD"})).json()["result"]["XXBTZUSD"]
    minutes = 14 * 1440
    assert 3 * minutes <= len(rows) <= 12 * minutes
    times = [_ns(r[2]) for r in rows]
    assert times == sorted(times)
    assert [r[6] for r in rows] == list(range(1, len(rows) + 1))  # trade ids: Kraken's per-book sequence
    closes: dict[int, str] = {}
    for row, ts in zip(rows, times, strict=True):
        closes[ts // MINUTE_NS - origin_minute] = row[0]  # the last trade of each minute wins
    assert sorted(closes) == list(range(-minutes, 0))
    # the expected path, recomputed from the spec and seed (not the simulator's cached one)
    path = ScenarioPath(parse_scenario("trend"), 5, "BTC/USD", 60000.0)
    log_closes = path.log_closes(-minutes, -1)
    expected = np.rint(np.exp(log_closes) / 0.1).astype(np.int64)
    got = np.array([int(Decimal(closes[m]) / TICK) for m in range(-minutes, 0)], dtype=np.int64)
    assert np.array_equal(got, expected)
    assert Decimal(rows[-1][0]) == Decimal("60000.0")  # the history ends at the start price

    # Without since: the most recent 1000 trades, oldest first, the cursor at the newest.
    newest = latest["XXBTZUSD"]
    assert len(newest) == 1000
    assert newest == rows[-1000:]
    assert int(latest["last"]) // 100_000 == times[-1] // 100_000

    # OHLC: Kraken's last 720 one-minute candles, closes on the path; hourly candles over the 14 days
    candles = ohlc["XXBTZUSD"]
    assert len(candles) == 720
    assert [c[0] // 60 - origin_minute for c in candles] == list(range(-720, 0))
    assert [int(Decimal(c[4]) / TICK) for c in candles] == expected[-720:].tolist()
    for _, o, h, low, c, vwap, volume, count in candles:
        assert Decimal(low) <= min(Decimal(o), Decimal(c)) <= max(Decimal(o), Decimal(c)) <= Decimal(h)
        assert Decimal(low) <= Decimal(vwap) <= Decimal(h)
        assert Decimal(volume) > 0
        assert 3 <= count <= 12
    assert 14 * 24 <= len(hourly["XXBTZUSD"]) <= 14 * 24 + 1
    assert sum(c[7] for c in hourly["XXBTZUSD"]) == len(rows)
    # the 24 h ticker covers the last day of history
    day = [t for t in times if t >= times[-1] - 86_400 * 10**9]
    assert ticker["t"][1] == len(day)
    assert Decimal(ticker["l"][1]) <= Decimal(ticker["c"][0]) <= Decimal(ticker["h"][1])


async def test_trades_without_since_returns_the_latest_of_the_tape(make_sim: Any, kit: SimpleNamespace) -> None:
    sim = await make_sim()  # no scenario: the live tape
    async with httpx.AsyncClient(base_url=sim.rest_url) as admin:
        for price in ("60000.0", "60001.0", "60002.0"):
            await kit.place(admin, "BTC/USD", "sell", price, "0.01")
            await kit.place(admin, "BTC/USD", "buy", price, "0.01")
        r = await admin.get("/0/public/Trades", params={"pair": "XBTUSD", "count": 2})
    result = r.json()["result"]
    assert [row[0] for row in result["XXBTZUSD"]] == ["60001.00000", "60002.00000"]


# -- ground truth -----------------------------------------------------------------------------------------
def test_random_walk_ground_truth_is_exactly_one_half() -> None:
    truth = ground_truth(parse_scenario("random_walk:vol=0.002"), 15)
    (phase,) = truth["phases"]
    assert phase["hit_rate_optimal"] == phase["hit_rate_oracle"] == 0.5
    assert phase["expected_return_optimal_long"] == phase["corr_optimal"] == phase["hit_rate_optimal_se"] == 0.0


def test_trend_ground_truth_is_an_edge_below_the_oracle() -> None:
    truth = ground_truth(parse_scenario("trend"), 15)
    (phase,) = truth["phases"]
    assert 0.5 < phase["hit_rate_optimal"] < phase["hit_rate_oracle"]
    assert phase["hit_rate_optimal"] - 0.5 > 20 * phase["hit_rate_optimal_se"]
    assert 0 < phase["hit_rate_optimal_se"] < 0.01
    assert phase["expected_return_optimal_long"] > 5 * phase["expected_return_optimal_long_se"]
    assert 0 < phase["corr_optimal"] < 1
    assert truth["forecast_factor"] == pytest.approx(sum((1 - 2 / 240) ** k for k in range(1, 16)))
    # deterministic: same figures twice
    assert ground_truth(parse_scenario("trend"), 15) == truth


def test_oracle_hit_rate_without_switches_matches_the_closed_form() -> None:
    """With p -> 0 the state never changes: R_h | s ~ N(s d h, sigma^2 h), so P(sign R_h = s) = Phi(d sqrt(h)/sigma)."""
    for drift, horizon in ((0.0002, 15), (0.0001, 5)):
        spec = parse_scenario(f"trend:drift={drift},regime_minutes=1000000000")
        (phase,) = ground_truth(spec, horizon)["phases"]
        exact = NormalDist().cdf(drift * math.sqrt(horizon) / 0.001)
        assert abs(phase["hit_rate_oracle"] - exact) < 4 * phase["hit_rate_oracle_se"] + 1e-3


def test_hamilton_filter_matches_a_direct_bayes_computation() -> None:
    """The posterior by enumeration of the forward recursion with explicit normal densities (scipy)."""
    rng = np.random.default_rng(1)
    returns = rng.normal(0.0, 0.001, 300) + 0.0002
    d, sigma, p = 0.0002, 0.001, 0.01
    pi = hamilton_filter(returns, d, sigma, p)
    prob = np.array([0.5, 0.5])  # P(s = +1), P(s = -1)
    transition = np.array([[1 - p, p], [p, 1 - p]])
    for t, r in enumerate(returns):
        prior = transition.T @ prob
        joint = prior * np.array([norm.pdf(r, d, sigma), norm.pdf(r, -d, sigma)])
        prob = joint / joint.sum()
        assert pi[t] == pytest.approx(prob[0], abs=1e-9)


def test_change_scenarios_report_the_truth_per_phase() -> None:
    truth = ground_truth(parse_scenario("regime_change:change_at=30"), 15)
    before, after = truth["phases"]
    assert (before["phase"], after["phase"], after["from_minute"]) == ("before", "after", 30)
    assert before["hit_rate_optimal"] > 0.6
    assert after["hit_rate_optimal"] == 0.5
    vol = ground_truth(parse_scenario("volatility_change:drift=0.0002,vol_mult=2"), 15)["phases"]
    assert vol[0]["hit_rate_optimal"] > vol[1]["hit_rate_optimal"] > 0.5  # same drift, more noise after


# -- statistics of the generated history (truth known) ----------------------------------------------------
async def _history_returns(make_sim: Any, scenario: str, seed: int) -> dict[str, np.ndarray]:
    sim = await make_sim(market="generate", scenario=scenario, history_days=14, seed=seed)
    out = {}
    for symbol, md in sim.exchange.marketdata.symbols.items():
        archive = md.archive
        ts = np.frombuffer(archive.ts, dtype=np.int64)
        ticks = np.frombuffer(archive.price_ticks, dtype=np.int64)
        minute = ts // MINUTE_NS
        last = np.flatnonzero(np.diff(minute)).tolist() + [len(ts) - 1]
        assert len(last) == 14 * 1440
        out[symbol] = np.diff(np.log(ticks[last].astype(float)))
    return out


async def test_random_walk_history_has_no_autocorrelation(make_sim: Any) -> None:
    for symbol, r in (await _history_returns(make_sim, "random_walk", 11)).items():
        n = len(r)
        x = r - r.mean()
        band = norm.ppf(0.995) / math.sqrt(n)  # 99 % band of a sample autocorrelation under independence
        acf = [float(np.dot(x[:-k], x[k:]) / np.dot(x, x)) for k in range(1, 16)]
        assert all(abs(a) < band for a in acf), (symbol, acf, band)
        assert r.std() == pytest.approx(0.001, rel=0.03)


async def test_optimal_filter_on_the_trend_history_hits_the_ground_truth(make_sim: Any) -> None:
    spec = parse_scenario("trend")
    (truth,) = ground_truth(spec, 15)["phases"]
    for symbol, r in (await _history_returns(make_sim, "trend", 12)).items():
        pi = hamilton_filter(r, 0.0002, 0.001, spec.switch_prob)
        forward = forward_sums(r, 15)
        burn = 500
        hits = np.sign(2 * pi[burn : len(forward)] - 1) == np.sign(forward[burn:])
        # the MC's batch-means SE rescaled to this sample's length, plus the MC's own error
        se = truth["hit_rate_optimal_se"] * math.sqrt(200_000 / len(hits))
        assert abs(hits.mean() - truth["hit_rate_optimal"]) < 3 * math.hypot(se, truth["hit_rate_optimal_se"]), (
            symbol,
            hits.mean(),
        )


# -- live continuation ------------------------------------------------------------------------------------
async def test_live_order_flow_follows_the_path_minute_by_minute(make_sim: Any) -> None:
    """10 steps a second of simulated time over 4 whole minutes: the book keeps up with sigma = 0.1 %/minute
    and each 1-minute bar built from the trades closes within a few spreads of the path's close."""
    sim = await make_sim(market="generate", scenario="trend", history_days=0.05, seed=9)
    md = sim.exchange.marketdata["BTC/USD"]
    gen = sim.market.generators["BTC/USD"]
    book = sim.exchange.books["BTC/USD"]
    path = sim.market.paths["BTC/USD"]
    origin_minute = sim.market.origin_ns // MINUTE_NS
    assert md.archive is not None
    history = len(md.archive)
    start = (time.time_ns() // MINUTE_NS + 1) * MINUTE_NS  # the next whole minute
    deviation, spread = [], []
    try:
        for k in range(4 * 600):
            sim.clock.set_override(start + k * 100_000_000)
            sim.market.step(1, "BTC/USD")
            bid, ask = book.best_bid(), book.best_ask()
            assert bid is not None
            assert ask is not None
            assert bid < ask
            deviation.append(float(abs(gen.fair - (bid + ask) / 2)))
            spread.append(float(ask - bid))
    finally:
        sim.clock.set_override(None)
    # The book keeps up (USD; level spacing 0.5, the fair moves ~60 USD a minute, ~2.5 USD a step): the mid
    # sits on the fair and the spread stays near two spacings.
    assert np.median(deviation) < 0.5
    assert np.quantile(deviation, 0.99) < 2.0
    assert np.median(spread) <= 1.0
    closes: dict[int, Decimal] = {}
    counts: dict[int, int] = {}
    for i in range(history, len(md.archive)):
        minute = md.archive.ts[i] // MINUTE_NS - origin_minute
        closes[minute] = Decimal(md.archive.price_ticks[i]) * TICK
        counts[minute] = counts.get(minute, 0) + 1
    first = start // MINUTE_NS - origin_minute
    assert sorted(closes) == list(range(first, first + 4))
    for minute, close in closes.items():
        assert abs(close - path.close_price(minute, TICK)) <= Decimal("1.5"), (minute, close)  # ~2 spreads
        assert 3 <= counts[minute] <= 30  # the history's 3-12 takers a minute (a taker may fill several orders)
    # the archive keeps the live trades after the history: REST paging continues seamlessly
    assert md.archive.trade_ids[history] == md.archive.trade_ids[history - 1] + 1


# -- the admin API ----------------------------------------------------------------------------------------
async def test_admin_scenario_reports_the_truth_the_state_and_the_change_time(make_sim: Any) -> None:
    sim = await make_sim(market="generate", scenario="regime_change:change_at=45", history_days=0.1, seed=4)
    async with httpx.AsyncClient(base_url=sim.rest_url) as client:
        info = (await client.get("/_sim/scenario", params={"horizon": 10})).json()
        bad = await client.get("/_sim/scenario", params={"horizon": 0})
        state = (await client.get("/_sim/state", params={"messages": 0})).json()
    assert info["name"] == "regime_change"
    assert info["params"]["change_at"] == 45
    assert info["seed"] == 4
    origin = sim.market.origin_ns
    assert info["origin"].endswith(":00.000000Z")
    assert info["changes"][0]["minute"] == 45

    def parsed(text: str) -> datetime:
        return datetime.fromisoformat(text.replace("Z", "+00:00"))

    # 45 minutes after the origin (which may be the day before: a run near midnight crossed it)
    assert parsed(info["changes"][0]["time"]) == parsed(info["origin"]) + timedelta(minutes=45)
    btc = info["symbols"]["BTC/USD"]
    assert btc["regime_state"] in (-1, 1)
    assert btc["minute"] == 0
    assert btc["phase"] == "before"
    assert Decimal(btc["last_close"]) == Decimal("60000.0")
    truth = info["ground_truth"]
    assert truth["horizon"] == 10
    assert [p["phase"] for p in truth["phases"]] == ["before", "after"]
    assert truth["phases"][1]["hit_rate_optimal"] == 0.5
    assert bad.status_code == 400
    assert state["driver"]["scenario"]["name"] == "regime_change"
    assert state["driver"]["scenario"]["origin_ns"] == origin


async def test_admin_scenario_of_the_regime_mix_has_no_ground_truth(make_sim: Any) -> None:
    sim = await make_sim(market="generate")
    async with httpx.AsyncClient(base_url=sim.rest_url) as client:
        info = (await client.get("/_sim/scenario")).json()
    assert info["name"] == "regimes"
    assert info["ground_truth"] is None
