"""Kraken error strings (PROTOCOL.md §1.4) map to typed exceptions that say whether a retry can help."""

from __future__ import annotations

from decimal import Decimal

import pytest

from ingest.kraken import errors as e


@pytest.mark.parametrize(
    ("text", "cls", "retryable"),
    [
        ("EGeneral:Invalid arguments", e.InvalidArguments, False),
        ("EGeneral:Invalid arguments:Index unavailable", e.InvalidArguments, False),
        ("EGeneral:Temporary lockout", e.TemporaryLockout, False),
        ("EGeneral:Permission denied", e.PermissionDenied, False),
        ("EGeneral:Internal error", e.InternalError, True),
        ("EGeneral:Internal error:12345", e.InternalError, True),
        ("EGeneral:Unknown method", e.UnknownMethod, False),
        ("EService:Unavailable", e.ServiceUnavailable, True),
        ("EService:Busy", e.ServiceUnavailable, True),
        ("EService:Market in cancel_only mode", e.MarketRestricted, False),
        ("EService:Market in post_only mode", e.MarketRestricted, False),
        ("EService:Deadline elapsed", e.DeadlineElapsed, True),
        ("EService: Throttled: 1700000000", e.RateLimitExceeded, True),
        ("EAPI:Invalid key", e.AuthenticationError, False),
        ("EAPI:Invalid signature", e.AuthenticationError, False),
        ("EAPI:Invalid nonce", e.InvalidNonce, True),
        ("EAPI:Rate limit exceeded", e.ApiRateLimitExceeded, True),
        ("EAPI:Bad request", e.InvalidArguments, False),
        ("EOrder:Cannot open opposing position", e.MarginError, False),
        ("EOrder:Cannot open position", e.MarginError, False),
        ("EOrder:Margin allowance exceeded", e.MarginError, False),
        ("EOrder:Margin level too low", e.MarginError, False),
        ("EOrder:Margin position size exceeded", e.MarginError, False),
        ("EOrder:Insufficient margin", e.MarginError, False),
        ("EOrder:Insufficient funds", e.InsufficientFunds, False),
        ("EOrder:Order minimum not met", e.OrderMinimumNotMet, False),
        ("EOrder:Cost minimum not met", e.CostMinimumNotMet, False),
        ("EOrder:Tick size check failed", e.TickSizeError, False),
        ("EOrder:Orders limit exceeded", e.OrdersLimitExceeded, False),
        ("EOrder:Rate limit exceeded", e.TradingRateLimitExceeded, True),
        ("EOrder:Invalid price", e.InvalidPrice, False),
        ("EOrder:Domain rate limit exceeded", e.TradingRateLimitExceeded, True),
        ("EOrder:Positions limit exceeded", e.PositionsLimitExceeded, False),
        ("EOrder:Reduce only:Non-PC", e.ReduceOnlyViolation, False),
        ("EOrder:Reduce only:No position exists", e.ReduceOnlyViolation, False),
        ("EOrder:Reduce only:Position is closed", e.ReduceOnlyViolation, False),
        ("EOrder:Scheduled orders limit exceeded", e.OrdersLimitExceeded, False),
        ("EOrder:Unknown position", e.UnknownPosition, False),
        ("EOrder:Unknown order", e.UnknownOrder, False),
        ("EOrder:Invalid order", e.InvalidOrder, False),
        ("EAccount:Invalid permissions", e.PermissionDenied, False),
        ("EAuth:Account temporary disabled", e.AccountRestricted, False),
        ("EAuth:Account unconfirmed", e.AccountRestricted, False),
        ("EAuth:Rate limit exceeded", e.RateLimitExceeded, True),
        ("EAuth:Too many requests", e.RateLimitExceeded, True),
        ("ETrade:Invalid request", e.InvalidArguments, False),
        ("EBM:limit exceeded:CAL", e.TradingLimitExceeded, False),
        ("EFunding:Max fee exceeded", e.FundingError, False),
        ("EQuery:Unknown asset pair", e.UnknownAssetPair, False),
        ("ESession:Invalid session", e.AuthenticationError, False),
        ("EOrder:Something new", e.OrderRejected, False),
        ("EService:Something new", e.ServiceUnavailable, True),
        ("Subscription Not Found", e.KrakenError, False),
    ],
)
def test_error_string_maps_to_type_and_retryable_flag(text: str, cls: type, retryable: bool) -> None:
    exc = e.error_from_string(text)
    assert type(exc) is cls
    assert exc.retryable is retryable
    assert exc.error == text


def test_market_restricted_carries_the_mode() -> None:
    exc = e.error_from_string("EService:Market in cancel_only mode")
    assert isinstance(exc, e.MarketRestricted)
    assert exc.mode == "cancel_only"


def test_throttled_carries_the_retry_time() -> None:
    exc = e.error_from_string("EService: Throttled: 1700000000")
    assert isinstance(exc, e.RateLimitExceeded)
    assert exc.retry_at == Decimal(1700000000)


def test_raise_for_errors_raises_the_first_error_with_all_strings_attached() -> None:
    with pytest.raises(e.InsufficientFunds) as info:
        e.raise_for_errors(["WGeneral:Deprecated", "EOrder:Insufficient funds", "EGeneral:Invalid arguments"])
    assert info.value.errors == (
        "WGeneral:Deprecated",
        "EOrder:Insufficient funds",
        "EGeneral:Invalid arguments",
    )


def test_raise_for_errors_returns_warnings_when_no_error() -> None:
    assert e.raise_for_errors(["WGeneral:Deprecated"]) == ["WGeneral:Deprecated"]
    assert e.raise_for_errors([]) == []


def test_order_outcome_unknown_is_not_retryable_and_carries_the_client_ids() -> None:
    exc = e.OrderOutcomeUnknown("timeout", cl_ord_id="abc", userref=7, pair="XBTUSD")
    assert not exc.retryable
    assert (exc.cl_ord_id, exc.userref, exc.pair) == ("abc", 7, "XBTUSD")
    assert isinstance(exc, e.KrakenError)
