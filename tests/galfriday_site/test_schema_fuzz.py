"""Schemathesis against the OpenAPI schema the API serves (drf-spectacular at /api/schema/), for each role.

Every operation of the schema gets requests generated from it, valid ones (positive) and ones that break it
(negative), sent in-process to Django's WSGI application as anonymous, a read-only user, a trader and staff (real
API tokens), with DEBUG off. Each response must be no server error (5xx) and conform to the schema: its status
code documented for the operation, its content type and its body those the schema declares. Path parameters are
drawn half of the time from the ids of real rows (an order, a model and its versions, an experiment, a run and a
discrepancy), so detail pages answer 200 and their bodies are checked too.

CI runs a bounded subset (FUZZ_EXAMPLES examples per operation, mode and role). The larger run of RELIABILITY.md is
the same test with more examples: `GALFRIDAY_FUZZ_EXAMPLES=100 ... pytest tests/galfriday_site/test_schema_fuzz.py
-s`; it prints the counts (requests, server errors, violations) per role.

The WSGI application runs in the test's thread and database transaction: Django's request_started/finished
signals would close that connection (as Django's own test client avoids), so they are detached while it runs.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import schemathesis
from django.contrib.auth.models import Group
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable
from rest_framework.test import APIClient
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core.failures import FailureGroup
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from galfriday_site.tokens import api_token_issue
from reconciliation.models import Discrepancy, ReconciliationRun
from tests.experiments.support import cheap_model, shadow_experiment
from tests.models_registry.factories import registry_settings  # noqa: F401  (a fixture: artifacts in tmp_path)
from tests.trading.factories import InstrumentFactory, placed_order
from trading.alerts import alert_raise, alert_silence_create
from trading.permissions import TRADERS_GROUP

pytestmark = [pytest.mark.django_db, pytest.mark.services("postgres")]

FUZZ_EXAMPLES = int(os.environ.get("GALFRIDAY_FUZZ_EXAMPLES", "4"))
ROLES = ("anonymous", "read-only", "trader", "staff")
MODES = (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
WSGI_HOST = "localhost"  # schemathesis's in-process WSGI client sends this Host


@dataclass
class Tally:
    requests: int = 0
    server_errors: int = 0
    violations: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)

    def add(self, other: Tally) -> None:
        self.requests += other.requests
        self.server_errors += other.server_errors
        self.violations += other.violations
        self.statuses.update(other.statuses)
        self.failures.extend(other.failures)


@pytest.fixture(autouse=True)
def _production_posture(settings) -> None:  # type: ignore[no-untyped-def]
    settings.DEBUG = False
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, WSGI_HOST]
    rates = {"user": "1000000/min", "anon": "1000000/min", "auth": "1000000/min"}
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": rates}


@contextmanager
def wsgi_in_test_transaction() -> Iterator[None]:
    """Django's test client reattaches these after each of its requests, so detach them right before the fuzz."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _user(django_user_model: Any, role: str) -> Any:
    user = django_user_model.objects.create_user(
        username=f"fuzz-{role}", password="pw-fuzz-123", is_staff=role == "staff"
    )
    if role == "trader":
        user.groups.add(Group.objects.get_or_create(name=TRADERS_GROUP)[0])
    return user


@pytest.fixture
def users(django_user_model) -> dict[str, Any]:  # type: ignore[no-untyped-def]
    return {"anonymous": None, **{role: _user(django_user_model, role) for role in ROLES[1:]}}


def auth_headers(user: Any) -> dict[str, str]:
    """A fresh token per operation: the fuzz of `auth/token/revoke/` deletes the tokens it is sent with."""
    if user is None:
        return {}
    raw, _ = api_token_issue(user=user)
    return {"Authorization": f"Token {raw}"}


@pytest.fixture
def real_ids(registry_settings) -> dict[str, Any]:  # type: ignore[no-untyped-def]  # noqa: F811
    """Rows for the path parameters to name: an order, a model with three versions (v1 in production) and a running
    shadow experiment, a reconciliation run with a discrepancy, an alert and a silence."""
    instrument = InstrumentFactory()
    order = placed_order(instrument=instrument)
    model, versions = cheap_model(3, promote=1)
    experiment = shadow_experiment(model, [2])
    now = timezone.now()
    run = ReconciliationRun.objects.create(trigger="operator", started_at=now, finished_at=now, status="halted")
    discrepancy = Discrepancy.objects.create(
        run=run, kind="balance_mismatch", severity="warning", asset="USD", difference=Decimal("0.5")
    )
    alert = alert_raise(kind="drift", severity="warning", message="fuzz", fingerprint="drift:version:fuzz")
    silence = alert_silence_create(kind="drift", reason="fuzz", actor="user:fuzz", duration=timedelta(hours=1))
    return {
        "alert_id": alert.pk,
        "silence_id": silence.pk,
        "order_id": order.pk,
        "name": model.name,
        "version": versions[0].version,
        "alias": "champion",
        "experiment_id": experiment.pk,
        "run_id": run.pk,
        "discrepancy_id": discrepancy.pk,
    }


@pytest.fixture
def api_schema(django_user_model) -> Any:  # type: ignore[no-untyped-def]
    """The schema as the API serves it to an authenticated user, loaded for in-process WSGI calls."""
    client = APIClient()
    client.force_authenticate(_user(django_user_model, "schema-reader"))
    response = client.get("/api/schema/", {"format": "json"})
    assert response.status_code == 200, response.content[:300]
    schema = schemathesis.openapi.from_dict(response.json())
    # The role's real token is the only credential sent: no generated Authorization header or session cookie.
    schema.config.generation.update(with_security_parameters=False)
    schema.app = get_wsgi_application()
    return schema


def fuzz_operation(operation: Any, headers: dict[str, str], real: dict[str, Any], examples: int) -> Tally:
    tally = Tally()
    names = {p.name for p in operation.path_parameters}
    known = {k: v for k, v in real.items() if k in names}

    for mode in MODES:
        strategies = [operation.as_strategy(generation_mode=mode)]
        if known and mode is GenerationMode.POSITIVE:
            strategies.append(operation.as_strategy(generation_mode=mode, path_parameters=known))

        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            derandomize=True,
            suppress_health_check=list(HealthCheck),
        )
        @given(case=st.one_of(strategies))
        def run(case: Any) -> None:
            response = case.call(headers=headers)
            tally.requests += 1
            tally.statuses[response.status_code] += 1
            if response.status_code >= 500:
                tally.server_errors += 1
            try:
                case.validate_response(response, checks=CHECKS, headers=headers)
            except FailureGroup as exc:  # record it and keep fuzzing (no shrinking: the run stays bounded)
                if response.status_code < 500:
                    tally.violations += 1
                tally.failures.append(f"{case.method} {case.formatted_path} -> {response.status_code}: {exc}"[:2000])

        try:
            run()
        except Unsatisfiable:  # nothing in the operation can be made invalid (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE
    return tally


@pytest.mark.parametrize("role", ROLES)
def test_the_api_conforms_to_its_schema_for_every_role(role, api_schema, users, real_ids, capsys) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    total = Tally()
    operations = [result.ok() for result in api_schema.get_all_operations()]
    with wsgi_in_test_transaction():
        for operation in operations:
            total.add(fuzz_operation(operation, auth_headers(users[role]), real_ids, FUZZ_EXAMPLES))
    elapsed = time.monotonic() - started
    with capsys.disabled():
        print(
            f"\nfuzz role={role} operations={len(operations)} examples/op/mode={FUZZ_EXAMPLES} "
            f"requests={total.requests} "
            f"server_errors={total.server_errors} violations={total.violations} seconds={elapsed:.1f} "
            f"statuses={dict(sorted(total.statuses.items()))}"
        )
    report = os.environ.get("GALFRIDAY_FUZZ_REPORT")
    if report:  # every failure, for a person to read after a long run
        with open(report, "a", encoding="utf-8") as out:
            out.writelines(f"[{role}] {failure}\n\n" for failure in total.failures)
    assert len(operations) >= 50  # the whole API, the experiments included
    assert total.requests >= len(operations)
    assert total.failures == [], "\n\n".join(total.failures[:10])


# What the fuzz found, pinned by name (both were schema violations of every role's run).


def test_an_api_path_that_no_route_matches_is_a_json_404() -> None:
    """`/api/trading/orders/abc/` (an int converter given text) answered Django's HTML page, undocumented."""
    response = APIClient().get("/api/trading/orders/abc/")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"
    page = APIClient().get("/not-the-api/")
    assert page.status_code == 404
    assert page["Content-Type"].startswith("text/html")


def test_the_alias_list_is_documented_as_the_array_it_serves(django_user_model) -> None:  # type: ignore[no-untyped-def]
    client = APIClient()
    client.force_authenticate(_user(django_user_model, "schema-reader"))
    schema = client.get("/api/schema/", {"format": "json"}).json()
    body = schema["paths"]["/api/models/{name}/aliases/"]["get"]["responses"]["200"]["content"]["application/json"]
    assert body["schema"]["type"] == "array"
    assert "limit" not in {p["name"] for p in schema["paths"]["/api/models/{name}/aliases/"]["get"]["parameters"]}
