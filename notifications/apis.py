"""Notifications endpoints: the delivery log (messages, with what each carried), the alert event log and the
channels (configured or not, routing, last outcome; never a secret) for authenticated users; sending a test
notification and re-queueing a message for staff (the API's default permission)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema, extend_schema_field, extend_schema_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from core.errors import NotFoundError
from core.pagination import paginated_response
from notifications import selectors, services
from notifications.models import AlertEvent, Channel, Notification
from trading.permissions import actor_name


def _valid(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return dict(serializer.validated_data)


@extend_schema_serializer(component_name="NotificationAlertEvent")
class EventOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    alert_id = serializers.IntegerField()
    change = serializers.CharField()
    kind = serializers.CharField()
    severity = serializers.CharField()
    fingerprint = serializers.CharField()
    message = serializers.CharField()
    count = serializers.IntegerField()
    silenced = serializers.BooleanField()
    routed_to = serializers.ListField(child=serializers.CharField())
    occurred_at = serializers.DateTimeField()


@extend_schema_serializer(component_name="Notification")
class NotificationOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    channel = serializers.CharField()
    kind = serializers.CharField()
    bucket = serializers.CharField()
    state = serializers.CharField()
    subject = serializers.CharField()
    event_count = serializers.IntegerField()
    requested_by = serializers.CharField()
    created_at = serializers.DateTimeField()
    deliver_after = serializers.DateTimeField()
    sealed_at = serializers.DateTimeField(allow_null=True)
    attempts = serializers.IntegerField()
    last_attempt_at = serializers.DateTimeField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()
    sent_at = serializers.DateTimeField(allow_null=True)


@extend_schema_serializer(component_name="NotificationDetail")
class NotificationDetailSerializer(NotificationOutputSerializer):
    body = serializers.CharField()
    payload = serializers.JSONField()
    events = serializers.SerializerMethodField()

    @extend_schema_field(EventOutputSerializer(many=True))
    def get_events(self, obj: Notification) -> list[dict[str, Any]]:
        return list(EventOutputSerializer(selectors.notification_events(notification=obj), many=True).data)


class NotificationListApi(APIView):
    class FilterSerializer(serializers.Serializer):
        channel = serializers.ChoiceField(choices=Channel.values, required=False)
        state = serializers.ChoiceField(choices=Notification.State.values, required=False)
        kind = serializers.ChoiceField(choices=Notification.Kind.values, required=False)
        alert_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
        created_after = serializers.DateTimeField(required=False)
        created_before = serializers.DateTimeField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses=NotificationOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = _valid(self.FilterSerializer, request.query_params)
        return paginated_response(
            request, self, selectors.notification_list(filters=filters), NotificationOutputSerializer
        )


class NotificationDetailApi(APIView):
    @extend_schema(responses=NotificationDetailSerializer)
    def get(self, request: Request, notification_id: int) -> Response:
        found = selectors.notification_get(notification_id=notification_id)
        if found is None:
            raise NotFoundError(f"notification {notification_id} does not exist")
        return Response(NotificationDetailSerializer(found).data)


class NotificationRequeueApi(APIView):
    """Send a failed message again (after fixing its channel); 409 for a message already sent."""

    @extend_schema(request=None, responses=NotificationOutputSerializer)
    def post(self, request: Request, notification_id: int) -> Response:
        found = services.notification_requeue(notification_id=notification_id, actor=actor_name(request.user))
        return Response(NotificationOutputSerializer(found).data)


class NotificationTestApi(APIView):
    """A test notification to one channel, or to every configured channel; answered 202 with the messages queued
    (their state is in the delivery log). 409 `channel_not_configured` when there is nowhere to send."""

    @extend_schema_serializer(component_name="NotificationTestInput")
    class InputSerializer(serializers.Serializer):
        channel = serializers.ChoiceField(choices=Channel.values, required=False, allow_null=True, default=None)

    @extend_schema(request=InputSerializer, responses={202: NotificationOutputSerializer(many=True)})
    def post(self, request: Request) -> Response:
        data = _valid(self.InputSerializer, request.data)
        created = services.notification_send_test(requested_by=actor_name(request.user), channel=data["channel"])
        return Response(NotificationOutputSerializer(created, many=True).data, status=status.HTTP_202_ACCEPTED)


class EventListApi(APIView):
    """The alert event log: every change of an alert the notifications heard of, and where it was routed."""

    class FilterSerializer(serializers.Serializer):
        alert_id = serializers.IntegerField(required=False, min_value=1, max_value=2**63 - 1)
        change = serializers.ChoiceField(choices=AlertEvent.Change.values, required=False)
        kind = serializers.CharField(required=False, max_length=40)
        severity = serializers.ChoiceField(choices=["critical", "warning", "info"], required=False)
        occurred_after = serializers.DateTimeField(required=False)

    @extend_schema(parameters=[FilterSerializer], responses=EventOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        filters = _valid(self.FilterSerializer, request.query_params)
        return paginated_response(request, self, selectors.event_list(filters=filters), EventOutputSerializer)


@extend_schema_serializer(component_name="NotificationChannel")
class ChannelOutputSerializer(serializers.Serializer):
    channel = serializers.CharField()
    configured = serializers.BooleanField()
    severities = serializers.ListField(child=serializers.CharField())
    kinds = serializers.ListField(child=serializers.CharField())
    last_sent_at = serializers.DateTimeField(allow_null=True)
    last_error = serializers.CharField()
    last_error_at = serializers.DateTimeField(allow_null=True)
    pending = serializers.IntegerField()
    sent = serializers.IntegerField()
    failed = serializers.IntegerField()


class ChannelListApi(APIView):
    paged = False  # three rows, always (galfriday_site.schema)

    @extend_schema(responses=ChannelOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        return Response(ChannelOutputSerializer(selectors.channel_overview(), many=True).data)
