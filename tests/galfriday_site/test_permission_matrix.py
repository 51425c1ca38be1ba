"""Every API route × {anonymous, read-only user, trader, staff}, from the URL configuration.

The routes and their methods are discovered by walking `galfriday_site.urls`; who may call each is declared once
below (POLICY), from what each app says:

- the project default (`galfriday_site.permissions.ReadAuthenticatedWriteStaff`): reads need an authenticated user,
  writes a staff account (risk limits, the model registry, reconciliation, experiments);
- trading actions (orders, the kill switch and resume) need a member of the traders group (`trading.permissions`):
  a staff account outside the group is not a trader;
- the registry's artifact download needs staff;
- health and the token endpoint are open; revoking a token needs the token's user;
- the schema and its pages need a login in production (DEBUG off, as here).

A route discovered but not declared fails (`test_every_api_route_has_a_declared_policy`), so does a declared route
that no longer exists; a route whose permission class lets a wrong role in, or keeps a right one out, fails its
matrix cell. A refused request must not reach the handler: it runs no INSERT, UPDATE or DELETE and schedules no
on-commit work (a Celery task, a gateway call), although its body is a valid one where the route writes.

Users authenticate with real API tokens (`Authorization: Token ...`), as integrations do.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import URLPattern, URLResolver, path
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.test import APIClient
from rest_framework.views import APIView

from galfriday_site.tokens import api_token_issue
from galfriday_site.urls import urlpatterns as site_urlpatterns
from tests.trading.factories import InstrumentFactory, placed_order
from trading.permissions import TRADERS_GROUP

pytestmark = pytest.mark.django_db

ANONYMOUS, READ_ONLY, TRADER, STAFF = "anonymous", "read-only", "trader", "staff"
ROLES = (ANONYMOUS, READ_ONLY, TRADER, STAFF)

EVERYONE = frozenset(ROLES)
AUTHENTICATED = frozenset({READ_ONLY, TRADER, STAFF})
TRADERS = frozenset({TRADER})
STAFF_ONLY = frozenset({STAFF})

# Who may call each route (by its URL name) with each method. Reads: AUTHENTICATED unless said otherwise.
POLICY: dict[str, dict[str, frozenset[str]]] = {
    # galfriday_site
    "api:health": {"GET": EVERYONE},
    "api:auth-token": {"POST": EVERYONE},
    "api:auth-token-revoke": {"POST": AUTHENTICATED},
    "api:schema": {"GET": AUTHENTICATED},
    "api:docs": {"GET": AUTHENTICATED},
    "api:redoc": {"GET": AUTHENTICATED},
    # trading: reads for any user, trading actions for traders, risk limits for staff
    "api:trading:order-list": {"GET": AUTHENTICATED},
    "api:trading:order-create": {"POST": TRADERS},
    "api:trading:order-cancel-all": {"POST": TRADERS},
    "api:trading:order-detail": {"GET": AUTHENTICATED},
    "api:trading:order-cancel": {"POST": TRADERS},
    "api:trading:fill-list": {"GET": AUTHENTICATED},
    "api:trading:decision-list": {"GET": AUTHENTICATED},
    "api:trading:position-list": {"GET": AUTHENTICATED},
    "api:trading:balance-list": {"GET": AUTHENTICATED},
    "api:trading:state": {"GET": AUTHENTICATED},
    "api:trading:state-halt": {"POST": TRADERS},
    "api:trading:state-reduce": {"POST": TRADERS},
    "api:trading:state-resume": {"POST": TRADERS},
    "api:trading:risk-limit-list": {"GET": AUTHENTICATED},
    "api:trading:risk-limit-update": {"POST": STAFF_ONLY},
    "api:trading:alert-list": {"GET": AUTHENTICATED},
    "api:trading:equity": {"GET": AUTHENTICATED},
    "api:trading:pnl": {"GET": AUTHENTICATED},
    # dashboard: the read endpoints the pages' scripts fetch
    "dashboard:market-candles": {"GET": AUTHENTICATED},
    "dashboard:market-why": {"GET": AUTHENTICATED},
    "dashboard:model-cumulative": {"GET": AUTHENTICATED},
    "dashboard:system-health": {"GET": AUTHENTICATED},
    "dashboard:system-celery": {"GET": AUTHENTICATED},
    # model registry: reads for any user, changes and the artifact for staff
    "api:models_registry:model-list": {"GET": AUTHENTICATED, "POST": STAFF_ONLY},
    "api:models_registry:model-detail": {"GET": AUTHENTICATED},
    "api:models_registry:version-list": {"GET": AUTHENTICATED},
    "api:models_registry:version-detail": {"GET": AUTHENTICATED},
    "api:models_registry:version-metrics": {"GET": AUTHENTICATED},
    "api:models_registry:version-promote": {"POST": STAFF_ONLY},
    "api:models_registry:version-archive": {"POST": STAFF_ONLY},
    "api:models_registry:version-artifact": {"GET": STAFF_ONLY},
    "api:models_registry:version-live-metrics": {"GET": AUTHENTICATED},
    "api:models_registry:version-outcomes": {"GET": AUTHENTICATED},
    "api:models_registry:version-calibration": {"GET": AUTHENTICATED},
    "api:models_registry:version-drift": {"GET": AUTHENTICATED, "POST": STAFF_ONLY},
    "api:models_registry:version-drift-report": {"GET": AUTHENTICATED},
    "api:models_registry:drift-thresholds": {"GET": AUTHENTICATED, "PUT": STAFF_ONLY},
    "api:models_registry:alias-list": {"GET": AUTHENTICATED, "POST": STAFF_ONLY},
    "api:models_registry:alias-remove": {"POST": STAFF_ONLY},
    "api:models_registry:history": {"GET": AUTHENTICATED},
    "api:models_registry:production": {"GET": AUTHENTICATED},
    # retraining: runs and policy for any user, a trigger and a policy change for staff
    "api:models_registry:retrain": {"GET": AUTHENTICATED, "POST": STAFF_ONLY},
    "api:models_registry:retraining-run": {"GET": AUTHENTICATED},
    "api:models_registry:retraining-policy": {"GET": AUTHENTICATED, "PUT": STAFF_ONLY},
    # reconciliation: reads for any user, the trigger and discrepancy handling for staff
    "api:reconciliation:run-list": {"GET": AUTHENTICATED},
    "api:reconciliation:run-trigger": {"POST": STAFF_ONLY},
    "api:reconciliation:run-detail": {"GET": AUTHENTICATED},
    "api:reconciliation:discrepancy-list": {"GET": AUTHENTICATED},
    "api:reconciliation:discrepancy-detail": {"GET": AUTHENTICATED},
    "api:reconciliation:discrepancy-acknowledge": {"POST": STAFF_ONLY},
    "api:reconciliation:discrepancy-resolve": {"POST": STAFF_ONLY},
    # experiments: reads for any user, creation and every transition for staff
    "api:experiments:experiment-list": {"GET": AUTHENTICATED, "POST": STAFF_ONLY},
    "api:experiments:experiment-detail": {"GET": AUTHENTICATED},
    "api:experiments:experiment-results": {"GET": AUTHENTICATED},
    "api:experiments:experiment-start": {"POST": STAFF_ONLY},
    "api:experiments:experiment-pause": {"POST": STAFF_ONLY},
    "api:experiments:experiment-resume": {"POST": STAFF_ONLY},
    "api:experiments:experiment-stop": {"POST": STAFF_ONLY},
    "api:experiments:experiment-abort": {"POST": STAFF_ONLY},
    "api:experiments:experiment-conclude": {"POST": STAFF_ONLY},
    "api:experiments:experiment-promote": {"POST": STAFF_ONLY},
    # alerting: reads for any user, acknowledge / resolve / silences for staff
    "api:alerting:alert-list": {"GET": AUTHENTICATED},
    "api:alerting:alert-detail": {"GET": AUTHENTICATED},
    "api:alerting:alert-acknowledge": {"POST": STAFF_ONLY},
    "api:alerting:alert-resolve": {"POST": STAFF_ONLY},
    "api:alerting:silence-list": {"GET": AUTHENTICATED, "POST": STAFF_ONLY},
    "api:alerting:silence-expire": {"POST": STAFF_ONLY},
    # notifications: the delivery and event logs and the channels for any user, test and re-queue for staff
    "api:notifications:notification-list": {"GET": AUTHENTICATED},
    "api:notifications:notification-detail": {"GET": AUTHENTICATED},
    "api:notifications:notification-requeue": {"POST": STAFF_ONLY},
    "api:notifications:notification-test": {"POST": STAFF_ONLY},
    "api:notifications:channel-list": {"GET": AUTHENTICATED},
    "api:notifications:event-list": {"GET": AUTHENTICATED},
}

REASON = {"reason": "permission matrix probe: this must not happen for a wrong role"}
# A valid body for every write that takes one, so a refused request would have written had it got through.
BODIES: dict[str, dict[str, Any]] = {
    "api:auth-token": {"username": "probe-nobody", "password": "not-a-password"},
    "api:auth-token-revoke": {"all": True},
    "api:trading:order-create": {
        "symbol": "BTC/USD",
        "side": "buy",
        "order_type": "limit",
        "quantity": "0.01",
        "limit_price": "100.0",
    },
    "api:trading:order-cancel-all": REASON,
    "api:trading:order-cancel": REASON,
    "api:trading:risk-limit-update": {**REASON, "symbol": None, "max_orders_per_minute": 3},
    "api:models_registry:model-list": {"name": "probe-model", "description": "made by a probe"},
    "api:models_registry:alias-list": {"alias": "probe", "version": 1, "reason": "probe"},
    "api:models_registry:version-promote": {**REASON, "stage": "staging"},
    "api:models_registry:drift-thresholds": {"thresholds": {"wasserstein": 0.2}},
    "api:reconciliation:run-trigger": REASON,
    "api:reconciliation:discrepancy-acknowledge": {"note": "probe"},
    "api:reconciliation:discrepancy-resolve": {"note": "probe"},
    "api:experiments:experiment-conclude": REASON,
    "api:alerting:alert-acknowledge": {"note": "probe"},
    "api:alerting:alert-resolve": {"note": "probe"},
    "api:alerting:silence-list": {"kind": "drift", "reason": "probe", "duration_minutes": 5},
    "api:alerting:silence-expire": {"note": "probe"},
}
WRITE_SQL = re.compile(r"^\s*(INSERT|UPDATE|DELETE)\b", re.IGNORECASE)
REFUSALS = {(401, "not_authenticated"), (401, "authentication_failed"), (403, "permission_denied")}
IGNORED_METHODS = {"OPTIONS", "HEAD"}  # DRF's metadata and GET's twin


@dataclass(frozen=True)
class Route:
    name: str
    route: str
    methods: tuple[str, ...]
    view: type[APIView]


def api_routes(patterns: list[URLPattern | URLResolver], prefix: str = "", namespace: str = "") -> Iterator[Route]:
    """Every DRF view under the patterns, with its full route, namespaced name and implemented methods. A view
    that is not a DRF APIView under /api/ is an error: it would escape the API's permission and error handling."""
    for entry in patterns:
        if isinstance(entry, URLResolver):
            inner = f"{namespace}:{entry.namespace}" if namespace and entry.namespace else entry.namespace or namespace
            yield from api_routes(entry.url_patterns, prefix + str(entry.pattern), inner)
            continue
        route = prefix + str(entry.pattern)
        view = getattr(entry.callback, "view_class", None) or getattr(entry.callback, "cls", None)
        if not (isinstance(view, type) and issubclass(view, APIView)):
            if route.startswith("api/"):
                raise AssertionError(f"{route} is served by {entry.callback!r}, not a DRF view")
            continue
        methods = tuple(
            m.upper() for m in view.http_method_names if hasattr(view, m) and m.upper() not in IGNORED_METHODS
        )
        name = f"{namespace}:{entry.name}" if namespace else str(entry.name)
        yield Route(name=name, route=route, methods=methods, view=view)


ROUTES = {r.name: r for r in api_routes(site_urlpatterns)}
CELLS = [(name, method, role) for name, r in sorted(ROUTES.items()) for method in r.methods for role in ROLES]


def expected(role: str, allowed: frozenset[str]) -> str:
    if role in allowed:
        return "allowed"
    return "401" if role == ANONYMOUS else "403"


def outcome(response: Any) -> str:
    """'401' or '403' for a permission refusal (in the error shape for JSON; the HTML documentation pages answer
    in plain text), 'allowed' for anything else."""
    if not response.get("Content-Type", "").startswith("application/json"):
        return str(response.status_code) if response.status_code in (401, 403) else "allowed"
    body = response.json()
    code = body["error"].get("code") if isinstance(body, dict) and isinstance(body.get("error"), dict) else None
    if (response.status_code, code) in REFUSALS:
        return str(response.status_code)
    assert response.status_code not in (401, 403), (response.status_code, response.content[:300])
    return "allowed"


def concrete(route: str, ids: dict[str, Any]) -> str:
    def fill(match: re.Match[str]) -> str:
        converter, name = match.group(1), match.group(2)
        return str(ids.get(name, 999_999 if converter == "int" else "missing"))

    return "/" + re.sub(r"<(?:(\w+):)?(\w+)>", fill, route)


@dataclass
class Probe:
    response: Any
    writes: list[str]
    on_commit: list[Any]


def probe(client: APIClient, method: str, url: str, body: dict[str, Any] | None, capture_on_commit: Any) -> Probe:
    with capture_on_commit() as callbacks, CaptureQueriesContext(connection) as queries:
        send = getattr(client, method.lower())
        response = send(url, body, format="json") if body is not None else send(url)
    writes = [q["sql"] for q in queries.captured_queries if WRITE_SQL.match(q["sql"])]
    return Probe(response=response, writes=writes, on_commit=list(callbacks))


@pytest.fixture(autouse=True)
def _production_posture(settings) -> None:  # type: ignore[no-untyped-def]
    """DEBUG off (the schema needs a login) and rates that this many requests from one address cannot reach."""
    settings.DEBUG = False
    rates = {"user": "100000/min", "anon": "100000/min", "auth": "100000/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}


def make_client(role: str, django_user_model: Any) -> APIClient:
    client = APIClient()
    if role == ANONYMOUS:
        return client
    user = django_user_model.objects.create_user(
        username=f"matrix-{role}", password="pw-matrix-123", is_staff=role == STAFF
    )
    if role == TRADER:
        user.groups.add(Group.objects.get_or_create(name=TRADERS_GROUP)[0])
    raw, _ = api_token_issue(user=user)
    client.credentials(HTTP_AUTHORIZATION=f"Token {raw}")
    return client


def test_every_api_route_has_a_declared_policy() -> None:
    discovered = {(name, m) for name, r in ROUTES.items() for m in r.methods}
    declared = {(name, m) for name, methods in POLICY.items() for m in methods}
    assert discovered - declared == set(), "routes without a declared policy (add them to POLICY)"
    assert declared - discovered == set(), "declared routes that the URL configuration no longer serves"


def test_the_walk_sees_every_app_and_the_experiments_api() -> None:
    prefixes = {r.route.split("/")[1] for r in ROUTES.values()}
    assert {"trading", "models", "reconciliation", "experiments", "auth", "health", "schema"} <= prefixes
    assert len(CELLS) == 4 * sum(len(r.methods) for r in ROUTES.values())


@pytest.mark.parametrize(("name", "method", "role"), CELLS)
def test_permission_matrix(
    name: str, method: str, role: str, django_user_model, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    client = make_client(role, django_user_model)
    instrument = InstrumentFactory()
    order = placed_order(instrument=instrument)
    url = concrete(ROUTES[name].route, {"order_id": order.pk, "name": "probe-model"})
    body = BODIES.get(name, REASON) if method != "GET" else None
    want = expected(role, POLICY[name][method])

    result = probe(client, method, url, body, django_capture_on_commit_callbacks)

    assert outcome(result.response) == want, (url, method, role, result.response.status_code, result.response.content)
    assert result.response.status_code < 500, result.response.content
    if want != "allowed":
        assert result.writes == [], f"a refused {method} {url} wrote: {result.writes}"
        assert result.on_commit == [], f"a refused {method} {url} scheduled work after commit"


# The mechanism itself: a route without a declared policy, and a view whose permission is wrong, are caught.


class OpenWriteApi(APIView):
    permission_classes = [AllowAny]

    def post(self, request: Any) -> Response:
        return Response({"done": True})


class DefaultPermissionApi(APIView):
    def post(self, request: Any) -> Response:
        return Response({"done": True})


def test_a_new_route_is_discovered_and_has_no_policy() -> None:
    extra = [path("api/new/", DefaultPermissionApi.as_view(), name="new-thing")]
    routes = {r.name: r for r in api_routes([*site_urlpatterns, *extra])}
    assert routes["new-thing"].methods == ("POST",)
    assert "new-thing" not in POLICY


def test_a_plain_django_view_under_the_api_is_refused() -> None:
    def plain(request: Any) -> Any:
        raise AssertionError("never called")

    with pytest.raises(AssertionError, match="not a DRF view"):
        list(api_routes([path("api/plain/", plain, name="plain")]))


urlpatterns = [
    *site_urlpatterns,
    path("api/probe/open/", OpenWriteApi.as_view()),
    path("api/probe/default/", DefaultPermissionApi.as_view()),
]


@pytest.mark.parametrize(
    ("url", "role", "cell"), [("/api/probe/open/", ANONYMOUS, "401"), ("/api/probe/default/", TRADER, "allowed")]
)
def test_a_wrong_permission_class_breaks_its_cell(url, role, cell, settings, django_user_model) -> None:  # type: ignore[no-untyped-def]
    """Declared for traders: served with AllowAny it lets the anonymous caller in; left on the project default it
    keeps the trader out. Either way the observed cell is not the declared one."""
    settings.ROOT_URLCONF = __name__
    client = make_client(role, django_user_model)
    assert expected(role, TRADERS) == cell
    assert outcome(client.post(url, REASON, format="json")) != cell


def test_the_write_detector_sees_a_write_that_got_through(
    django_user_model, django_capture_on_commit_callbacks
) -> None:  # type: ignore[no-untyped-def]
    """The check on refused requests can fail: the same probe, allowed, records the INSERTs it made."""
    client = make_client(STAFF, django_user_model)
    result = probe(
        client, "POST", "/api/models/", BODIES["api:models_registry:model-list"], django_capture_on_commit_callbacks
    )
    assert result.response.status_code == 201, result.response.content
    assert any(sql.upper().startswith("INSERT") for sql in result.writes)
