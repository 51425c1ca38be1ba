"""The web process's settings are the web's: `uvicorn galfriday_site.asgi:application` imports the `galfriday_site`
package first (its Celery app), and nothing there may load Django's settings before galfriday_site.asgi says it is
the web process (GALFRIDAY_PROCESS=web). Otherwise the web takes the worker's persistent database connections, one
per request thread, and exhausts PostgreSQL under load (issue 18: the load bench found it)."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

CODE = """
import galfriday_site.asgi
from django.conf import settings
from galfriday_site.celery import app
print(settings.GALFRIDAY_PROCESS, settings.DATABASES["default"]["CONN_MAX_AGE"], settings.HEALTH_CHECK_CACHE_S,
      app.conf.broker_transport)
"""


def test_importing_the_asgi_application_loads_the_web_settings() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "GALFRIDAY_PROCESS"}}
    env.update(
        GALFRIDAY_ENV_FILE="/dev/null",
        DATABASE_URL="postgres://postgres@127.0.0.1:1/unused",  # not connected to: the settings are what is read
        REDIS_URL="redis://127.0.0.1:1/0",
    )
    env.pop("DATABASE_WEB_CONN_MAX_AGE", None)
    env.pop("HEALTH_CHECK_CACHE_S", None)
    out = subprocess.run(
        [sys.executable, "-c", CODE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert out.returncode == 0, out.stderr[-3000:]
    # the web's connection policy and health cache, and the workers' broker transport still chosen for Redis
    assert out.stdout.split() == ["web", "0", "1.0", "galfriday_site.broker:Transport"]
