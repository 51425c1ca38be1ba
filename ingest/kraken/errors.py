"""Typed exceptions for Kraken's error strings (PROTOCOL.md §1.4) and for protocol-level failures.

Kraken reports errors as strings ``<severity><category>:<message>`` in the ``error`` array of a REST
envelope or the ``error`` field of a WebSocket v2 response. :func:`error_from_string` maps one string to an
exception instance; :func:`raise_for_errors` raises for an envelope's error list.

Every :class:`KrakenError` carries ``retryable``: whether sending the same request again (with a fresh nonce,
after a backoff) can succeed. ``retryable`` is False where a retry cannot help without a change (bad
arguments, insufficient funds, a market in ``cancel_only``) or where a blind retry is unsafe
(:class:`OrderOutcomeUnknown`: query the order by its client order id first).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import ClassVar

__all__ = [
    "AccountRestricted",
    "ApiRateLimitExceeded",
    "AuthenticationError",
    "BookNotSynced",
    "ChecksumMismatch",
    "CostMinimumNotMet",
    "DeadlineElapsed",
    "FundingError",
    "HttpStatusError",
    "InsufficientFunds",
    "InternalError",
    "InvalidArguments",
    "InvalidNonce",
    "InvalidOrder",
    "InvalidPrice",
    "InvalidResponse",
    "KrakenError",
    "MalformedMessage",
    "MarginError",
    "MarketRestricted",
    "NotConnected",
    "OrderMinimumNotMet",
    "OrderOutcomeUnknown",
    "OrderRejected",
    "OrdersLimitExceeded",
    "PermissionDenied",
    "PositionsLimitExceeded",
    "RateLimitExceeded",
    "ReduceOnlyViolation",
    "RequestTimeout",
    "ServiceUnavailable",
    "TemporaryLockout",
    "TickSizeError",
    "TradingLimitExceeded",
    "TradingRateLimitExceeded",
    "TransportError",
    "UnknownAsset",
    "UnknownAssetPair",
    "UnknownMethod",
    "UnknownOrder",
    "UnknownPosition",
    "error_from_string",
    "is_warning",
    "raise_for_errors",
]


class KrakenError(Exception):
    """Base of every error reported by Kraken or met while talking to it."""

    retryable: ClassVar[bool] = False

    def __init__(self, message: str, *, errors: Sequence[str] | None = None) -> None:
        super().__init__(message)
        #: The Kraken error string this exception was built from (or a description for local failures).
        self.error: str = message
        #: Every error string of the response (a REST envelope can carry several).
        self.errors: tuple[str, ...] = tuple(errors) if errors is not None else (message,)


# --- authentication and permissions ----------------------------------------------------------------------


class AuthenticationError(KrakenError):
    """Invalid API key or signature; retrying with the same credentials cannot help."""


class TemporaryLockout(AuthenticationError):
    """``EGeneral:Temporary lockout``: too many sequential invalid-key errors; wait before trying again."""


class InvalidNonce(KrakenError):
    """``EAPI:Invalid nonce``: the request was rejected before processing; retry with a fresh nonce."""

    retryable = True


class PermissionDenied(KrakenError):
    """The API key lacks the permission for this call."""


class AccountRestricted(KrakenError):
    """The account is disabled or unconfirmed."""


# --- rate limits -----------------------------------------------------------------------------------------


class RateLimitExceeded(KrakenError):
    """A rate limit was exceeded; retry after a backoff (``retry_after`` seconds when Kraken says)."""

    retryable = True

    def __init__(self, message: str, *, errors: Sequence[str] | None = None, retry_at: Decimal | None = None) -> None:
        super().__init__(message, errors=errors)
        #: Unix time after which Kraken said to retry (``EService: Throttled: <ts>``), if given.
        self.retry_at: Decimal | None = retry_at


class ApiRateLimitExceeded(RateLimitExceeded):
    """The per-key REST call counter is over its maximum (``EAPI:Rate limit exceeded``)."""


class TradingRateLimitExceeded(RateLimitExceeded):
    """The per-pair trading-engine counter is over its threshold (``EOrder:Rate limit exceeded``)."""


# --- service state ---------------------------------------------------------------------------------------


class ServiceUnavailable(KrakenError):
    """The API or the matching engine is unavailable or busy; retry after a backoff."""

    retryable = True


class InternalError(ServiceUnavailable):
    """``EGeneral:Internal error``. Retryable for reads; for AddOrder the REST client reports
    :class:`OrderOutcomeUnknown` instead, because the order may have been accepted."""


class DeadlineElapsed(KrakenError):
    """``EService:Deadline elapsed``: the request reached the engine after its deadline and was not
    processed; it can be sent again."""

    retryable = True


class MarketRestricted(KrakenError):
    """The market is in ``cancel_only`` or ``post_only`` mode (``mode``); an immediate retry cannot help."""

    def __init__(self, message: str, *, errors: Sequence[str] | None = None, mode: str = "") -> None:
        super().__init__(message, errors=errors)
        self.mode: str = mode


# --- requests ------------------------------------------------------------------------------------------


class InvalidArguments(KrakenError):
    """The request's arguments were rejected."""


class UnknownMethod(InvalidArguments):
    """The endpoint does not exist."""


class UnknownAssetPair(InvalidArguments):
    """``EQuery:Unknown asset pair``."""


class UnknownAsset(InvalidArguments):
    """``EQuery:Unknown asset``."""


# --- orders --------------------------------------------------------------------------------------------


class OrderRejected(KrakenError):
    """The engine rejected the order; the same order will be rejected again."""


class InsufficientFunds(OrderRejected):
    """``EOrder:Insufficient funds``."""


class OrderMinimumNotMet(OrderRejected):
    """``EOrder:Order minimum not met``: volume below the pair's ``ordermin``."""


class CostMinimumNotMet(OrderRejected):
    """``EOrder:Cost minimum not met``: price × volume below the pair's ``costmin``."""


class TickSizeError(OrderRejected):
    """``EOrder:Tick size check failed``: the price is not a multiple of the tick size."""


class InvalidPrice(OrderRejected):
    """``EOrder:Invalid price``."""


class InvalidOrder(OrderRejected):
    """``EOrder:Invalid order``."""


class OrdersLimitExceeded(OrderRejected):
    """Too many open (or scheduled) orders on the pair."""


class PositionsLimitExceeded(OrderRejected):
    """``EOrder:Positions limit exceeded``."""


class MarginError(OrderRejected):
    """Margin or position errors (``EOrder:Insufficient margin``, ``Margin level too low``, ...)."""


class ReduceOnlyViolation(OrderRejected):
    """``EOrder:Reduce only:...``."""


class TradingLimitExceeded(OrderRejected):
    """A regulatory or account trading limit (``EBM:limit exceeded:CAL``)."""


class UnknownOrder(KrakenError):
    """``EOrder:Unknown order``: no such order (already closed, or never placed)."""


class UnknownPosition(KrakenError):
    """``EOrder:Unknown position``."""


class FundingError(KrakenError):
    """Funding (deposit/withdrawal) errors."""


# --- local failures ------------------------------------------------------------------------------------


class TransportError(KrakenError):
    """The request did not get a usable answer (connect failure, timeout before sending, HTTP error)."""

    retryable = True


class NotConnected(TransportError):
    """The WebSocket is not connected (or the client is closed): the request was NOT sent; safe to retry."""


class RequestTimeout(TransportError):
    """No response to a WebSocket request within its timeout. Not used for ``add_order`` (that raises
    :class:`OrderOutcomeUnknown`)."""


class HttpStatusError(TransportError):
    """A non-200 HTTP status: per Kraken's docs the servers could not be reached."""

    def __init__(self, message: str, *, status_code: int) -> None:
        super().__init__(message)
        self.status_code: int = status_code


class InvalidResponse(KrakenError):
    """A 200 response that is not a valid ``{"error": [...], "result": ...}`` envelope."""

    retryable = True


class OrderOutcomeUnknown(KrakenError):
    """An AddOrder was (possibly) sent but no reliable answer came back: timeout, connection lost after the
    request was written, an unreadable response or an internal error.

    The order may or may not exist. Do NOT resubmit blindly: query by ``cl_ord_id`` / ``userref``
    (OpenOrders/ClosedOrders, or the executions channel) first. ``retryable`` is False for that reason.
    """

    def __init__(
        self,
        message: str,
        *,
        cl_ord_id: str | None = None,
        userref: int | None = None,
        pair: str | None = None,
    ) -> None:
        super().__init__(message)
        self.cl_ord_id: str | None = cl_ord_id
        self.userref: int | None = userref
        self.pair: str | None = pair


class MalformedMessage(ValueError):
    """A frame or message that is not valid JSON or does not have the documented shape.

    Raised by the decoder, the message parser and the order book. Not a :class:`KrakenError`: it says the
    data is bad, not that Kraken refused something. Callers count and log it, then carry on.
    """


class BookNotSynced(Exception):
    """An update reached a book that has no valid snapshot (never had one, or lost it through a checksum
    mismatch or a malformed message). Resubscribe for a fresh snapshot."""


class ChecksumMismatch(Exception):
    """The book's CRC32 after applying a message differs from the message's checksum.

    The book is invalid until a new snapshot (resubscribe)."""

    def __init__(self, symbol: str, expected: int, computed: int) -> None:
        super().__init__(f"{symbol}: book checksum mismatch: message says {expected}, book gives {computed}")
        self.symbol: str = symbol
        self.expected: int = expected
        self.computed: int = computed


# --- mapping -------------------------------------------------------------------------------------------

_EXACT: dict[str, type[KrakenError]] = {
    "EAPI:Invalid key": AuthenticationError,
    "EAPI:Invalid signature": AuthenticationError,
    "EAPI:Invalid nonce": InvalidNonce,
    "EAPI:Rate limit exceeded": ApiRateLimitExceeded,
    "EAPI:Bad request": InvalidArguments,
    "EAPI:Feature disabled": PermissionDenied,
    "EGeneral:Temporary lockout": TemporaryLockout,
    "EGeneral:Permission denied": PermissionDenied,
    "EGeneral:Invalid arguments": InvalidArguments,
    "EGeneral:Unknown method": UnknownMethod,
    "EGeneral:Too many requests": RateLimitExceeded,
    "EAccount:Invalid permissions": PermissionDenied,
    "EAuth:Account temporary disabled": AccountRestricted,
    "EAuth:Account unconfirmed": AccountRestricted,
    "EAuth:Rate limit exceeded": RateLimitExceeded,
    "EAuth:Too many requests": RateLimitExceeded,
    "EService:Unavailable": ServiceUnavailable,
    "EService:Busy": ServiceUnavailable,
    "EService:Deadline elapsed": DeadlineElapsed,
    "EQuery:Unknown asset pair": UnknownAssetPair,
    "EQuery:Unknown asset": UnknownAsset,
    "ETrade:Invalid request": InvalidArguments,
    "EOrder:Insufficient funds": InsufficientFunds,
    "EOrder:Order minimum not met": OrderMinimumNotMet,
    "EOrder:Cost minimum not met": CostMinimumNotMet,
    "EOrder:Tick size check failed": TickSizeError,
    "EOrder:Invalid price": InvalidPrice,
    "EOrder:Invalid order": InvalidOrder,
    "EOrder:Unknown order": UnknownOrder,
    "EOrder:Unknown position": UnknownPosition,
    "EOrder:Rate limit exceeded": TradingRateLimitExceeded,
    "EOrder:Domain rate limit exceeded": TradingRateLimitExceeded,
    "EOrder:Orders limit exceeded": OrdersLimitExceeded,
    "EOrder:Scheduled orders limit exceeded": OrdersLimitExceeded,
    "EOrder:Positions limit exceeded": PositionsLimitExceeded,
    "EOrder:Cannot open opposing position": MarginError,
    "EOrder:Cannot open position": MarginError,
    "EOrder:Margin allowance exceeded": MarginError,
    "EOrder:Margin level too low": MarginError,
    "EOrder:Margin position size exceeded": MarginError,
    "EOrder:Insufficient margin": MarginError,
    "EBM:limit exceeded:CAL": TradingLimitExceeded,
}

# Prefix rules, tried in order after the exact table (normalised: no spaces around ':').
_PREFIX: tuple[tuple[str, type[KrakenError]], ...] = (
    ("EGeneral:Invalid arguments:", InvalidArguments),
    ("EGeneral:Internal error", InternalError),
    ("EOrder:Reduce only", ReduceOnlyViolation),
    ("EService:Market in cancel_only mode", MarketRestricted),
    ("EService:Market in post_only mode", MarketRestricted),
    ("EService:Market in limit_only mode", MarketRestricted),
    ("EService:Throttled", RateLimitExceeded),
    ("EFunding:", FundingError),
)

# Fallback by category when nothing above matched.
_CATEGORY: dict[str, type[KrakenError]] = {
    "EAPI": KrakenError,
    "EAuth": AccountRestricted,
    "EAccount": PermissionDenied,
    "EGeneral": KrakenError,
    "EService": ServiceUnavailable,
    "EQuery": InvalidArguments,
    "EOrder": OrderRejected,
    "ETrade": InvalidArguments,
    "EFunding": FundingError,
    "ESession": AuthenticationError,
    "EBM": TradingLimitExceeded,
}

_SPACES_AROUND_COLON = re.compile(r"\s*:\s*")
_MODE = re.compile(r"Market in (\w+) mode")
_THROTTLED_TS = re.compile(r"Throttled:\s*\[?\s*(\d+(?:\.\d+)?)")


def is_warning(error: str) -> bool:
    """True for a warning string (severity ``W``), which does not fail a request."""
    return error.startswith("W")


def error_from_string(error: str) -> KrakenError:
    """Map one Kraken error string to an exception instance (not raised).

    Matching is exact first, then by known prefix (``EGeneral:Internal error:<code>``, ``EService: Throttled:
    <ts>``, ``EOrder:Reduce only:...``), then by category; an unrecognised string becomes a plain
    :class:`KrakenError` (not retryable) that still carries the string.
    """
    text = error.strip()
    normalised = _SPACES_AROUND_COLON.sub(":", text)
    cls = _EXACT.get(normalised)
    if cls is None:
        for prefix, candidate in _PREFIX:
            if normalised.startswith(prefix):
                cls = candidate
                break
    if cls is None:
        category = normalised.split(":", 1)[0]
        cls = _CATEGORY.get(category, KrakenError)
    if cls is MarketRestricted:
        match = _MODE.search(text)
        return MarketRestricted(text, mode=match.group(1) if match else "")
    if cls is RateLimitExceeded and normalised.startswith("EService:Throttled"):
        ts = _THROTTLED_TS.search(text)
        return RateLimitExceeded(text, retry_at=Decimal(ts.group(1)) if ts else None)
    return cls(text)


def raise_for_errors(errors: Iterable[str]) -> list[str]:
    """Raise for the first error (severity ``E``) in ``errors``; return the warnings otherwise.

    The raised exception's ``errors`` holds every string of the list."""
    all_errors = [str(e) for e in errors]
    warnings: list[str] = []
    for item in all_errors:
        if is_warning(item):
            warnings.append(item)
            continue
        exc = error_from_string(item)
        exc.errors = tuple(all_errors)
        raise exc
    return warnings
