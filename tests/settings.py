"""Test settings: the project's settings plus a test-only app whose models exercise shared infrastructure
(the audit trail) before the domain models of later issues exist."""

from galfriday_site.settings import *  # noqa: F403
from galfriday_site.settings import INSTALLED_APPS

INSTALLED_APPS = [*INSTALLED_APPS, "tests.testapp"]
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]  # fast user creation in tests
