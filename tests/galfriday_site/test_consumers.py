"""The system events websocket: authenticated users receive events sent to the `system` group."""

from __future__ import annotations

import pytest
from channels.auth import AuthMiddlewareStack
from channels.layers import get_channel_layer
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import AnonymousUser

from galfriday_site.routing import websocket_urlpatterns

pytestmark = pytest.mark.django_db(transaction=True)


def communicator(user) -> WebsocketCommunicator:  # type: ignore[no-untyped-def]
    app = AuthMiddlewareStack(URLRouter(websocket_urlpatterns))
    comm = WebsocketCommunicator(app, "/ws/system/")
    comm.scope["user"] = user
    return comm


async def test_anonymous_websocket_is_refused() -> None:
    comm = communicator(AnonymousUser())
    connected, code = await comm.connect()
    assert not connected
    assert code == 4401


async def test_authenticated_user_receives_system_events(plain_user) -> None:  # type: ignore[no-untyped-def]
    comm = communicator(plain_user)
    connected, _ = await comm.connect()
    assert connected
    await get_channel_layer().group_send("system", {"type": "system.event", "event": {"kind": "halted", "why": "t"}})
    assert await comm.receive_json_from(timeout=5) == {"type": "event", "event": {"kind": "halted", "why": "t"}}
    await comm.send_json_to({"type": "ping"})
    assert await comm.receive_json_from(timeout=5) == {"type": "pong"}
    await comm.disconnect()
