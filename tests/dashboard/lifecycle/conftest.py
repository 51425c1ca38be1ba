"""Fixtures of the lifecycle pages' tests: clients for an anonymous visitor, a logged-in non-staff user and staff,
and the registry's isolated artifact settings. The browser tests use the dashboard harness
(tests/dashboard/conftest.py) on this helper's loopback ports."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from django.test import Client

from tests.dashboard import conftest as harness
from tests.models_registry.factories import registry_settings  # noqa: F401


@pytest.fixture(scope="session", autouse=True)
def _lifecycle_ports() -> Iterator[None]:
    """The lifecycle pages' browser tests keep to this helper's loopback ports (when they start the server)."""
    previous = harness.PORT_RANGE
    harness.PORT_RANGE = range(18300, 18340)
    yield
    harness.PORT_RANGE = previous


@pytest.fixture
def viewer(django_user_model: Any) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user(username="viewer", password="pw-viewer-123"))
    return client


@pytest.fixture
def staff(django_user_model: Any) -> Client:
    client = Client()
    client.force_login(django_user_model.objects.create_user(username="alice", password="pw-alice-123", is_staff=True))
    return client
