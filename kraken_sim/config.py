"""Simulator configuration: ports, account, tier limits, market source; and the one place it is checked
(``check_config``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from pathlib import Path

from kraken_sim.errors import ConfigError
from kraken_sim.instruments import DEFAULT_SYMBOLS
from kraken_sim.scenarios import ScenarioSpec, parse_scenario

__all__ = [
    "DEFAULT_API_KEY",
    "DEFAULT_API_SECRET",
    "DEFAULT_BALANCES",
    "MAX_HISTORY_DAYS",
    "TIERS",
    "ConfigError",
    "MarketPlan",
    "SimConfig",
    "Tier",
    "check_config",
    "parse_balances",
    "parse_market",
]

# Kraken's documented REST auth example secret (PROTOCOL.md §0.1). It is public, which is what a local default
# should be: nobody mistakes it for a real credential.
DEFAULT_API_KEY = "kraken-sim-key"
DEFAULT_API_SECRET = "kQH5HW/8p1uGOVjbgWA7FunAmGO8lsSUXNsu3eow76sz84Q18fWxnyRzBHCd3pd5nE9qa99HAZtuZuj6F1huXg=="
DEFAULT_BALANCES = "USD=100000,BTC=1,ETH=10"


@dataclass(frozen=True, slots=True)
class Tier:
    """Rate limits of one Kraken verification tier (PROTOCOL.md §1.5)."""

    name: str
    rest_max: Decimal  # REST call counter maximum
    rest_decay: Decimal  # per second
    trade_threshold: Decimal  # per-pair trading counter threshold (also WS executions maxratecount)
    trade_decay: Decimal  # per second
    max_open_orders: int  # per pair


TIERS: dict[str, Tier] = {
    "starter": Tier("starter", Decimal(15), Decimal("0.33"), Decimal(60), Decimal(1), 60),
    "intermediate": Tier("intermediate", Decimal(20), Decimal("0.5"), Decimal(125), Decimal("2.34"), 80),
    "pro": Tier("pro", Decimal(20), Decimal(1), Decimal(180), Decimal("3.75"), 225),
}


@dataclass(slots=True)
class SimConfig:
    host: str = "127.0.0.1"
    rest_port: int = 0
    ws_port: int = 0
    ws_auth_port: int = 0
    seed: int = 1
    instruments: tuple[str, ...] = DEFAULT_SYMBOLS
    balances: dict[str, Decimal] = field(default_factory=lambda: parse_balances(DEFAULT_BALANCES))
    api_key: str = DEFAULT_API_KEY
    api_secret: str = DEFAULT_API_SECRET
    tier: Tier = TIERS["intermediate"]
    enforce_rate_limits: bool = True
    history_call_cost: int = 2  # REST counter cost of TradesHistory / Ledgers (docs disagree: 2 or 4)
    market: str = "generate"  # generate | replay | none
    replay_file: Path | None = None
    replay_loop: bool = True
    rate: float = 10.0  # market generator actions (or replayed messages) per second, per instrument
    warmup_steps: int = 600  # generator steps run before start, back-dated, so OHLC/trades have history
    warmup_seconds: float = 3600.0  # how far back the warm-up starts
    # Market scenario (kraken_sim.scenarios): "regimes" is the regime-mix generator above; the others replace the
    # warm-up by ``history_days`` of back-dated 1-minute history of their path.
    scenario: str = "regimes"
    history_days: float = 0.0
    maker_fee: Decimal = Decimal("0.0025")
    taker_fee: Decimal = Decimal("0.0040")
    heartbeat_interval: float = 1.0
    idle_timeout: float = 60.0  # close a connection with no subscription that sent nothing for this long (0: never)
    token_ttl: float = 900.0
    record_messages: bool = False
    trade_tape_size: int = 1000  # public trades kept per instrument (what REST Trades can still serve)
    ws_queue_limit: int = 20_000  # messages buffered per connection before the simulator drops it
    ws_compression: bool = True  # accept permessage-deflate when the client offers it


def parse_balances(text: str) -> dict[str, Decimal]:
    """``USD=100000,BTC=1`` → ``{"USD": Decimal("100000"), "BTC": Decimal("1")}``."""
    result: dict[str, Decimal] = {}
    for part in text.split(","):
        part = part.strip()
        if not part:
            continue
        asset, sep, amount = part.partition("=")
        if not sep:
            raise ConfigError(f"balance {part!r} is not ASSET=AMOUNT")
        try:
            value = Decimal(amount.strip())
        except InvalidOperation as exc:
            raise ConfigError(f"balance {part!r} has an invalid amount") from exc
        if not value.is_finite() or value < 0:
            raise ConfigError(f"balance {part!r} must be a non-negative number")
        result[asset.strip().upper()] = value
    return result


MAX_HISTORY_DAYS = 60
MARKETS = ("generate", "replay", "none")


@dataclass(frozen=True, slots=True)
class MarketPlan:
    """What a checked configuration's market is: its scenario and how many minutes of history it installs."""

    scenario: ScenarioSpec
    history_minutes: int


def check_config(config: SimConfig) -> MarketPlan:
    """Every check of a configuration as a whole (the command line and in-process use alike); ``ConfigError``
    with the option's name for the first one that fails."""
    if config.rate < 0:
        raise ConfigError("--rate must be >= 0")
    if config.ws_queue_limit < 1:
        raise ConfigError("--ws-queue-limit must be >= 1")
    ports = [p for p in (config.rest_port, config.ws_port, config.ws_auth_port) if p]
    if len(ports) != len(set(ports)):
        raise ConfigError("--rest-port, --ws-port and --ws-auth-port must differ")
    if config.market not in MARKETS:
        raise ConfigError(f"--market must be generate, none or replay:FILE, not {config.market!r}")
    if config.market == "replay" and config.replay_file is None:
        raise ConfigError("--market replay needs a recording (replay:FILE)")
    if not 0 <= config.history_days <= MAX_HISTORY_DAYS:
        raise ConfigError(f"--history-days must be between 0 and {MAX_HISTORY_DAYS}, not {config.history_days}")
    scenario = parse_scenario(config.scenario)
    minutes = round(config.history_days * 1440)
    if scenario.is_process and config.market != "generate":
        raise ConfigError(f"--scenario {scenario.name} needs --market generate")
    if minutes and not scenario.is_process:
        raise ConfigError("--history-days needs a --scenario other than regimes")
    return MarketPlan(scenario, minutes)


def parse_market(text: str) -> tuple[str, Path | None]:
    if text in ("generate", "none"):
        return text, None
    if text.startswith("replay:"):
        path = Path(text.removeprefix("replay:"))
        if not path.is_file():
            raise ConfigError(f"replay file {path} does not exist")
        return "replay", path
    raise ConfigError(f"--market must be generate, none or replay:FILE, not {text!r}")
