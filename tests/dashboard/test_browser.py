"""The Overview and Market & trades pages in Debian's chromium against the real web process (see conftest):
they load without a console error or a failed request, live events reach them, the halt and resume buttons
switch trading (database and page agree), the why-chain goes from a fill to its prediction, and a page whose
websocket reconnects resyncs over REST."""

from __future__ import annotations

import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from tests.dashboard import scenario
from tests.dashboard.conftest import in_thread, publish_system_event
from tests.waiting import wait_for
from timeseries import get_store
from timeseries.base import Point
from trading import kill_switch
from trading.alerts import alert_raise
from trading.models import Decision, TradingState

pytestmark = [pytest.mark.services("postgres", "redis"), pytest.mark.django_db(transaction=True)]

LIVE = 'body[data-live="live"]'


def write_bars(symbol: str, end: Any, count: int = 30) -> None:
    """One-minute bars ending with the bar that starts at `end`, as the ingest worker stores them."""
    store = get_store()
    points = []
    for i in range(count):
        start = end - timedelta(minutes=count - 1 - i)
        base = Decimal(50000 + 10 * i)
        fields = {"open": base, "high": base + 25, "low": base - 25, "close": base + 5, "volume": Decimal("1.5")}
        points.append(Point("bars", start, fields, {"symbol": symbol, "interval": "1m"}))
    try:
        store.write_batch(points)
    finally:
        close = getattr(store, "close", None)
        if close is not None:
            close()


@pytest.fixture
def history() -> scenario.Scenario:
    s = scenario.build(timezone.now())
    write_bars(s.instrument.symbol, s.decision.bar_time + timedelta(minutes=3))
    return s


def open_live(page: Any, path: str) -> None:
    page.goto(path)
    page.wait_for_selector(LIVE)


def confirm_with_reason(page: Any, reason: str) -> None:
    dialog = page.locator("#gf-confirm")
    dialog.wait_for(state="visible")
    dialog.locator("textarea").fill(reason)
    dialog.locator(".gf-confirm-ok").click()


def test_overview_loads_with_every_panel(browser_page: Any, history: scenario.Scenario) -> None:
    open_live(browser_page, "/")
    browser_page.wait_for_selector('#equity-chart[data-points="25"], #equity-chart[data-points="24"]')
    browser_page.wait_for_selector("#health-strip [data-component='database'][data-status='ok']", timeout=20_000)
    positions = browser_page.locator("#positions-table tbody tr").first
    assert "BTC/USD" in positions.inner_text()
    assert "+50.00" in positions.inner_text()  # unrealised at the mark, to the cent
    assert "-6.50" in browser_page.locator("#pnl-table tr[data-row='fees']").inner_text()
    assert "15.00 %" in browser_page.locator("#drawdown-limit").inner_text()
    text = browser_page.locator("main").inner_text()
    assert "1234.567890123456" not in text  # no raw decimals
    browser_page.click("#equity-range button[data-days='1']")  # one day by the minute: every half-hourly snapshot
    browser_page.wait_for_function("Number(document.getElementById('equity-chart').dataset.points) >= 47")


def test_market_page_loads_with_candles_and_markers(browser_page: Any, history: scenario.Scenario) -> None:
    open_live(browser_page, "/market/?symbol=BTC/USD")
    browser_page.wait_for_selector('#candle-chart[data-candles="30"]')
    assert "1 decisions · 1 fills" in browser_page.locator("#candle-range").inner_text()
    assert browser_page.locator("#fills-table tbody tr[data-fill]").count() == 1


def test_an_event_published_on_the_channel_layer_appears_in_the_open_page(browser_page: Any) -> None:
    open_live(browser_page, "/")
    token = uuid.uuid4().hex
    publish_system_event({"topic": "probe", "message": token, "at": timezone.now().isoformat()})
    browser_page.wait_for_selector(f"#event-feed li[data-topic='probe']:has-text('{token}')", timeout=2_000)


def test_halt_button_halts_trading_and_resume_restores_it(browser_page: Any) -> None:
    open_live(browser_page, "/")
    browser_page.click("#btn-halt")
    confirm_with_reason(browser_page, "browser test: halt from the overview")
    browser_page.wait_for_selector("#state-badge[data-state='halted']")
    state = wait_for(lambda: TradingState.objects.filter(state="halted").first(), what="the halt in the database")
    assert state is not None
    assert state.reason == "browser test: halt from the overview"
    assert state.changed_by == "user:operator"
    assert state.history.filter(state="halted").exists()  # audited

    browser_page.click("#btn-resume")
    confirm_with_reason(browser_page, "browser test: resume")
    browser_page.wait_for_selector("#state-badge[data-state='active']")
    wait_for(lambda: TradingState.objects.filter(state="active").exists(), what="the resume in the database")
    assert "browser test: resume" in browser_page.locator("#state-reason").inner_text()


def test_a_switch_without_a_reason_changes_nothing(browser_page: Any) -> None:
    open_live(browser_page, "/")
    browser_page.click("#btn-halt")
    browser_page.locator("#gf-confirm .gf-confirm-ok").click()
    assert "reason is required" in browser_page.locator("#gf-confirm .gf-confirm-error").inner_text()
    browser_page.locator("#gf-confirm .gf-confirm-cancel").click()
    assert not TradingState.objects.filter(state="halted").exists()
    assert browser_page.locator("#state-badge").get_attribute("data-state") == "active"


def test_the_why_chain_goes_from_a_fill_to_its_prediction(browser_page: Any, history: scenario.Scenario) -> None:
    open_live(browser_page, "/market/?symbol=BTC/USD")
    browser_page.click(f"#fills-table tr[data-fill='{history.fill.pk}'] a")
    browser_page.wait_for_selector(f"#why[data-loaded='fill-{history.fill.pk}']")
    why = browser_page.locator("#why-body")
    assert f"Order {history.order.pk}" in why.locator("[data-step='order']").inner_text()
    assert "passed" in why.locator("[data-step='risk']").inner_text()
    decision = why.locator("[data-step='decision']").inner_text()
    assert "max_position_notional" in decision
    assert "0.310 % vs 0.520 %" in decision  # expected edge vs cost
    prediction = why.locator("[data-step='prediction']").inner_text()
    assert "btc-usd-1m-direction" in prediction
    assert "v3" in prediction
    assert "65.0 %" in prediction  # the up class's probability
    for name in scenario.FEATURE_NAMES:
        assert name in prediction
    assert f"fill={history.fill.pk}" in browser_page.url  # the explanation has a link of its own


def test_a_reconnecting_websocket_resyncs_the_page(browser_page: Any) -> None:
    open_live(browser_page, "/")
    assert browser_page.locator("body").get_attribute("data-resyncs") == "1"
    # A change the page is never told about (no event): only a resync can show it.
    TradingState.objects.update_or_create(  # written directly: no service, so no event can tell the page
        id=TradingState.SINGLETON_ID,
        defaults={"state": "halted", "reason": "halted while the page was disconnected", "changed_by": "user:x"},
    )
    browser_page.evaluate("window.gfLive.drop()")
    browser_page.wait_for_selector('body[data-resyncs="2"][data-live="live"]')
    browser_page.wait_for_selector("#state-badge[data-state='halted']")
    assert "halted while the page was disconnected" in browser_page.locator("#state-reason").inner_text()


def test_an_alert_raised_while_the_page_is_open_appears_and_is_acknowledged_with_a_note(browser_page: Any) -> None:
    open_live(browser_page, "/")
    alert = in_thread(
        lambda: alert_raise(kind="market_data_stale", severity="warning", message="BTC/USD quotes are 45 s old")
    )
    row = browser_page.locator(f"#alerts-table tr[data-alert='{alert.pk}']")
    row.wait_for(timeout=2_000)  # through the alert's system event, not a reload
    row.locator("button[data-ack]").click()
    confirm_with_reason(browser_page, "looking at the feed")
    browser_page.wait_for_selector(f"#alerts-table tr[data-alert='{alert.pk}']:has-text('acknowledged')")
    alert.refresh_from_db()
    assert alert.state == "acknowledged"
    assert alert.acknowledged_by == "user:operator"


def test_a_trading_state_change_made_elsewhere_reaches_the_open_page(browser_page: Any) -> None:
    open_live(browser_page, "/")
    in_thread(lambda: kill_switch.trading_reduce(reason="reduce from the API", actor="user:elsewhere"))
    browser_page.wait_for_selector("#state-badge[data-state='reducing']", timeout=2_000)  # its event, no reload
    assert browser_page.locator("body").get_attribute("data-resyncs") == "1"
    assert "user:elsewhere" in browser_page.locator("#state-by").inner_text()


def test_a_decision_that_did_not_trade_says_why(browser_page: Any, history: scenario.Scenario) -> None:
    skipped = Decision.objects.create(
        decision_id="BTC/USD:no-trade:momentum",
        instrument=history.instrument,
        bar_time=history.decision.bar_time + timedelta(minutes=1),
        model_version="momentum baseline",
        signal=1,
        confidence=Decimal("0.55"),
        expected_edge=Decimal("0.001"),
        cost=Decimal("0.0052"),
        status=Decision.Status.NO_TRADE,
        reason="expected edge 0.10 % below the round-trip cost 0.52 %",
    )
    open_live(browser_page, "/market/?symbol=BTC/USD")
    browser_page.click(f"#decisions-table tr[data-decision='{skipped.pk}'] a")
    browser_page.wait_for_selector(f"#why[data-loaded='decision-{skipped.pk}']")
    why = browser_page.locator("#why-body").inner_text()
    assert "below the round-trip cost" in why
    assert "not a registered model version" in why  # the baseline stores no prediction row, and the page says so
