"""The production start is refused on SQLite, the in-memory channel layer and a missing SECRET_KEY."""

from __future__ import annotations

import os

import pytest

from galfriday_site.checks import exchange_problems, policy_problems, production_problems
from tests.conftest import run_manage

PG_DB = {"default": {"ENGINE": "django.db.backends.postgresql", "NAME": "x", "HOST": "127.0.0.1"}}
SQLITE_DB = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": "/tmp/x.sqlite3"}}
REDIS_LAYER = {"default": {"BACKEND": "channels_redis.core.RedisChannelLayer", "CONFIG": {}}}
MEMORY_LAYER = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def ids(errors) -> set[str]:  # type: ignore[no-untyped-def]
    return {e.id for e in errors}


def test_production_check_rejects_sqlite() -> None:
    errors = production_problems(debug=False, databases=SQLITE_DB, channel_layers=REDIS_LAYER, secret_key="k" * 50)
    assert ids(errors) == {"galfriday.E001"}
    assert "DATABASE_URL" in errors[0].hint


def test_production_check_rejects_in_memory_channel_layer() -> None:
    errors = production_problems(debug=False, databases=PG_DB, channel_layers=MEMORY_LAYER, secret_key="k" * 50)
    assert ids(errors) == {"galfriday.E002"}
    assert "REDIS_URL" in errors[0].hint


def test_production_check_rejects_missing_secret_key() -> None:
    errors = production_problems(debug=False, databases=PG_DB, channel_layers=REDIS_LAYER, secret_key="")
    assert ids(errors) == {"galfriday.E003"}


def test_production_check_accepts_production_services() -> None:
    assert production_problems(debug=False, databases=PG_DB, channel_layers=REDIS_LAYER, secret_key="k" * 50) == []


def test_embedded_defaults_are_allowed_in_debug() -> None:
    assert production_problems(debug=True, databases=SQLITE_DB, channel_layers=MEMORY_LAYER, secret_key="") == []


def test_manage_py_refuses_production_start_on_embedded_defaults(embedded_env: dict[str, str]) -> None:
    env = {**embedded_env, "DEBUG": "false"}
    env.pop("SECRET_KEY", None)
    result = run_manage("check", env=env)
    assert result.returncode != 0
    output = result.stdout + result.stderr
    for check_id in ("galfriday.E001", "galfriday.E002", "galfriday.E003"):
        assert check_id in output
    assert "Set DATABASE_URL" in output


@pytest.mark.services("postgres", "redis")
def test_check_deploy_passes_with_production_environment(embedded_env: dict[str, str]) -> None:
    env = {
        **embedded_env,
        "DEBUG": "false",
        "SECRET_KEY": "a-long-random-production-secret-key-with-enough-entropy-0123456789",
        "DATABASE_URL": os.environ["DATABASE_URL"],
        "REDIS_URL": os.environ["REDIS_URL"],
        "ALLOWED_HOSTS": "galfriday.example.com",
        "MODELS_REGISTRY_ARTIFACT_KEYS": "k1:" + "A" * 43,
    }
    result = run_manage("check", "--deploy", "--fail-level", "WARNING", env=env)
    assert result.returncode == 0, result.stdout + result.stderr


def test_unknown_exchange_and_trading_mode_are_refused() -> None:
    errors = exchange_problems(exchange="binance", trading_mode="yolo", api_key="", api_secret="")
    assert ids(errors) == {"galfriday.E004", "galfriday.E005"}


def test_misspelt_tiers_and_unknown_orders_policy_are_refused() -> None:
    assert policy_problems(kraken_tier="starter", reconciliation_tier="PRO", unknown_orders="cancel") == []
    errors = policy_problems(kraken_tier="gold", reconciliation_tier="starter", unknown_orders="ignore")
    assert ids(errors) == {"galfriday.E010", "galfriday.E011"}
    assert "GALFRIDAY_KRAKEN_TIER is 'gold'" in errors[0].msg
    assert len(policy_problems(kraken_tier="x", reconciliation_tier="y", unknown_orders="adopt")) == 2
    fine = {"kraken_tier": "pro", "reconciliation_tier": "pro", "unknown_orders": "adopt"}
    assert policy_problems(**fine, nonce_source="redis", redis_url="redis://127.0.0.1:6379/0") == []
    assert ids(policy_problems(**fine, nonce_source="redis", redis_url="")) == {"galfriday.E012"}
    assert ids(policy_problems(**fine, nonce_source="memcached", redis_url="redis://x")) == {"galfriday.E012"}


def test_manage_py_refuses_a_misspelt_unknown_orders_policy(embedded_env: dict[str, str]) -> None:
    result = run_manage("check", env={**embedded_env, "GALFRIDAY_RECONCILIATION_UNKNOWN_ORDERS": "adpot"})
    assert result.returncode != 0
    assert "galfriday.E011" in result.stdout + result.stderr


def test_live_trading_needs_api_keys() -> None:
    assert ids(exchange_problems(exchange="kraken", trading_mode="live", api_key="", api_secret="")) == {
        "galfriday.E006"
    }
    assert exchange_problems(exchange="kraken", trading_mode="live", api_key="k", api_secret="s") == []
    assert exchange_problems(exchange="sim", trading_mode="paper", api_key="", api_secret="") == []


def test_production_needs_artifact_encryption_keys() -> None:
    errors = production_problems(
        debug=False, databases=PG_DB, channel_layers=REDIS_LAYER, secret_key="k" * 50, artifact_keys=[]
    )
    assert ids(errors) == {"galfriday.E007"}
