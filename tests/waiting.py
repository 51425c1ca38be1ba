"""Waiting in tests: poll a condition until it holds or a deadline passes (never a bare sleep, never an unbounded
loop). One implementation for the synchronous tests (`wait_for`) and one for the asynchronous ones (`until`).

The predicate's truthy value is returned, so a test can wait for a row and use it. Exceptions named in `retry_on`
(a server still starting: connection refused) count as "not yet" and the last one is reported if time runs out;
any other exception fails at once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def _timed_out(what: str, timeout: float, last_error: BaseException | None) -> AssertionError:
    detail = f" (last error: {last_error!r})" if last_error is not None else ""
    return AssertionError(f"timed out after {timeout} s waiting for {what}{detail}")


def wait_for(
    predicate: Callable[[], T],
    timeout: float = 30.0,
    what: str = "condition",
    *,
    interval: float = 0.05,
    retry_on: tuple[type[BaseException], ...] = (),
) -> T:
    """Call `predicate` every `interval` seconds until it returns something truthy (returned) or `timeout`
    seconds pass (AssertionError naming `what`)."""
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except retry_on as exc:
            last_error = exc
        else:
            if value:
                return value
        if time.monotonic() >= deadline:
            raise _timed_out(what, timeout, last_error)
        time.sleep(interval)


async def until(
    predicate: Callable[[], Any],
    timeout: float = 15.0,
    what: str = "condition",
    *,
    interval: float = 0.02,
    retry_on: tuple[type[BaseException], ...] = (),
) -> Any:
    """`wait_for` for coroutines: the event loop keeps running between checks."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            value = predicate()
        except retry_on as exc:
            last_error = exc
        else:
            if value:
                return value
        if loop.time() >= deadline:
            raise _timed_out(what, timeout, last_error)
        await asyncio.sleep(interval)
