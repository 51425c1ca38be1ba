from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.reconciliation.harness import SimLoop


@pytest.fixture(scope="session")
def sim_loop() -> Iterator[SimLoop]:
    """One event-loop thread for the session's simulators (each scenario starts its own simulator on port 0)."""
    loop = SimLoop()
    yield loop
    loop.close()


@pytest.fixture(autouse=True)
def _live_trading(settings) -> None:  # type: ignore[no-untyped-def]
    """Reconciliation follows a live account (in paper mode its task does nothing: see test_paper_mode_skips)."""
    settings.TRADING_MODE = "live"
