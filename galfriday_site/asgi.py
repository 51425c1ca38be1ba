"""ASGI entry point: HTTP through Django, websockets through Channels (authenticated by the session).

This module is the web process: it says so (GALFRIDAY_PROCESS=web) before the settings load, so the database
connections are not kept per thread, and it refuses to start when they would be (galfriday.E009)."""

import os

os.environ["GALFRIDAY_PROCESS"] = "web"
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "galfriday_site.settings")

from django.conf import settings
from django.core.asgi import get_asgi_application
from django.core.exceptions import ImproperlyConfigured

django_asgi_app = get_asgi_application()  # before importing consumers: it sets Django up

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from galfriday_site.checks import web_connection_problems  # noqa: E402
from galfriday_site.routing import websocket_urlpatterns  # noqa: E402

if settings.GALFRIDAY_PROCESS != "web":
    # The settings were loaded before this module said it is the web process (something imported at the package's
    # import read them): they chose the worker's persistent connections. Refuse rather than leak connections.
    raise ImproperlyConfigured(
        "galfriday_site.asgi: the settings were loaded before GALFRIDAY_PROCESS=web was set; nothing imported by "
        "the galfriday_site package may read Django settings at import time."
    )
_problems = web_connection_problems(process=settings.GALFRIDAY_PROCESS, databases=settings.DATABASES)
if _problems:
    raise ImproperlyConfigured("; ".join(f"{p.id}: {p.msg} {p.hint}" for p in _problems))

application = ProtocolTypeRouter(
    {
        "http": django_asgi_app,
        "websocket": AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns))),
    }
)
