"""The dashboard's browser-test harness: the real web process (uvicorn on `galfriday_site.asgi`, a subprocess on a
loopback port) against the test PostgreSQL database and the Redis channel layer, and Debian's chromium driven by
Playwright with a logged-in context.

- `web_server` (session): the server's base URL. It reads and writes the same database as the test (so tests that
  use it are `transaction=True`: what they write must be committed to be seen), and its channel layer is the
  test's Redis: `publish_system_event(...)` from a test reaches the open page's websocket.
- `browser_page`: a page of a context logged in as `dashboard_user` (staff and trader); it fails the test on any
  console error, uncaught page error, failed request or HTTP error answer, and writes a screenshot of the page as
  the test left it under `var/screenshots/` (git-ignored).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.conf import settings
from django.contrib.auth.models import Group
from django.db import connection
from django.test import Client

from galfriday_site.consumers import SYSTEM_GROUP
from tests.conftest import ROOT
from tests.loopback import loopback_port as shared_loopback_port
from tests.loopback import uvicorn_server

T = TypeVar("T")
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = ROOT / "var" / "screenshots"
PORT_RANGE = range(18200, 18250)  # this harness's loopback ports; the simulator port below is never opened
CLOSED_EXCHANGE_PORT = 18299


def loopback_port() -> int:
    """A free loopback port of the harness's range (fixed ranges keep parallel workers' servers apart)."""
    return shared_loopback_port(PORT_RANGE)


def web_env() -> dict[str, str]:
    """The environment of the web process: the test database (bars too), the test's Redis, an exchange that is
    not there."""
    db = settings.DATABASES["default"]
    url = f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
    dropped = {"DJANGO_SETTINGS_MODULE", "GALFRIDAY_PROCESS", "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env = {k: v for k, v in os.environ.items() if k not in dropped}
    env.update(
        {
            "DATABASE_URL": url,
            "DJANGO_SETTINGS_MODULE": "tests.settings",
            "GALFRIDAY_ENV_FILE": "/dev/null",
            "GALFRIDAY_THROTTLE_USER": "1000000/min",
            "KRAKEN_SIM_REST_PORT": str(CLOSED_EXCHANGE_PORT),  # the health strip shows the exchange failing
            "HEALTH_CHECK_TIMEOUT": "1",
            # Bars in the relational store of the test database, where the tests write them (tests.conftest keeps
            # tests off InfluxDB unless they are about it).
            "INFLUXDB_URL": "",
            "PYTHONUNBUFFERED": "1",
        }
    )
    return env


@pytest.fixture(scope="session")
def web_server(django_db_setup: None, django_db_blocker: Any) -> Iterator[str]:
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql"):
        pytest.skip("the browser tests run against PostgreSQL (DATABASE_URL)")
    if not os.environ.get("REDIS_URL"):
        pytest.skip("the browser tests need the Redis channel layer (REDIS_URL)")
    with uvicorn_server(web_env(), port=loopback_port(), log=ROOT / "var" / "dashboard-web-server.log") as base:
        yield base


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser per module of browser tests. Not per session: Playwright's sync API runs its event loop in this
    thread for as long as it is started, so every async test after it (consumers, the ingest worker) would fail
    with a loop already running, and DJANGO_ALLOW_ASYNC_UNSAFE would hide async-safety errors in them."""
    from playwright.sync_api import sync_playwright  # heavy; only browser tests pay for it

    if not Path(CHROMIUM).exists():
        pytest.skip(f"no chromium at {CHROMIUM} (apt-get install chromium)")
    # Playwright's sync API keeps an event loop running in this thread; the test's own ORM calls are synchronous
    # and safe (Playwright's documented setting for Django tests).
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
            try:
                yield browser
            finally:
                browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def dashboard_user(django_user_model: Any) -> Any:
    """Staff and a member of the traders group: sees every page and may halt, reduce and resume."""
    user = django_user_model.objects.create_user(username="operator", password="pw-operator-123", is_staff=True)
    user.groups.add(Group.objects.get_or_create(name="traders")[0])
    return user


@dataclass
class BrowserProblems:
    """What went wrong in the page: console errors, uncaught exceptions, failed requests and HTTP errors."""

    problems: list[str] = field(default_factory=list)
    allowed: list[re.Pattern[str]] = field(default_factory=list)

    def allow(self, pattern: str) -> None:
        """Accept problems matching `pattern` (a test that provokes one on purpose says which)."""
        self.allowed.append(re.compile(pattern))

    def add(self, text: str) -> None:
        self.problems.append(text)

    def unexpected(self) -> list[str]:
        return [p for p in self.problems if not any(a.search(p) for a in self.allowed)]


def _screenshot_name(nodeid: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", nodeid.split("::", 1)[-1])[:150] + ".png"


@pytest.fixture
def browser_problems() -> BrowserProblems:
    return BrowserProblems()


@pytest.fixture
def browser_page(
    request: pytest.FixtureRequest,
    web_server: str,
    chromium: Any,
    dashboard_user: Any,
    browser_problems: BrowserProblems,
) -> Iterator[Any]:
    client = Client()
    client.force_login(dashboard_user)
    session_cookie = client.cookies[settings.SESSION_COOKIE_NAME].value
    context = chromium.new_context(base_url=web_server, viewport={"width": 1400, "height": 1000})
    context.add_cookies([{"name": settings.SESSION_COOKIE_NAME, "value": session_cookie, "url": web_server}])
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.on("console", lambda m: browser_problems.add(f"console {m.type}: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: browser_problems.add(f"page error: {e}"))
    page.on("requestfailed", lambda r: browser_problems.add(f"request failed: {r.method} {r.url} {r.failure}"))
    page.on(
        "response",
        lambda r: browser_problems.add(f"HTTP {r.status}: {r.request.method} {r.url}") if r.status >= 400 else None,
    )
    try:
        yield page
    finally:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        try:
            page.screenshot(path=str(SCREENSHOTS / _screenshot_name(request.node.nodeid)), full_page=True)
        finally:
            context.close()
    unexpected = browser_problems.unexpected()
    assert not unexpected, "the page reported problems:\n" + "\n".join(unexpected)


def publish_system_event(event: dict[str, Any]) -> None:
    """What a producer does after it has persisted: one event to the `system` group of the channel layer (from a
    thread of its own: Playwright's loop runs in the test's thread, where `async_to_sync` refuses to run)."""
    message = {"type": "system.event", "event": event}
    with ThreadPoolExecutor(max_workers=1) as pool:
        pool.submit(async_to_sync(get_channel_layer().group_send), SYSTEM_GROUP, message).result(timeout=10)


def in_thread(function: Callable[[], T]) -> T:
    """Run `function` in a thread of its own, as another process's producer would: Playwright's loop runs in the
    test's thread, where `async_to_sync` (the publishing of a producer's events) refuses to run. The thread's
    database connection is closed when it is done."""

    def run() -> T:
        try:
            return function()
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(run).result(timeout=30)
