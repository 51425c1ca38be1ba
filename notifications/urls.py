"""The notifications API, mounted at `/api/notifications/` by galfriday_site.urls."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from notifications.apis import (
    ChannelListApi,
    EventListApi,
    NotificationDetailApi,
    NotificationListApi,
    NotificationRequeueApi,
    NotificationTestApi,
)

app_name = "notifications"

urlpatterns: list[URLPattern | URLResolver] = [
    path("", NotificationListApi.as_view(), name="notification-list"),
    path("test/", NotificationTestApi.as_view(), name="notification-test"),
    path("channels/", ChannelListApi.as_view(), name="channel-list"),
    path("events/", EventListApi.as_view(), name="event-list"),
    path("<int:notification_id>/", NotificationDetailApi.as_view(), name="notification-detail"),
    path("<int:notification_id>/requeue/", NotificationRequeueApi.as_view(), name="notification-requeue"),
]
