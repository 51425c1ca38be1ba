from django.urls import path

from galfriday_site.consumers import SystemEventsConsumer

websocket_urlpatterns = [
    path("ws/system/", SystemEventsConsumer.as_asgi()),
]
