"""What notifications keep: every alert change they heard of (the event log, never pruned by flood control), one
row per message to one channel (what, where, pending/sent/failed, attempts, last error, when sent), which events
each message carried, and one row per channel (the lock that serialises grouping and flood decisions, and its
last outcome for the admin).

A message is *open* while `sealed_at` is null: alerts routed to the channel in the same group (the same bucket:
now, or deferred by quiet hours) join it until it is due. Sealing renders its text and fixes what it carries; only
a sealed message is sent. State changes of a message (sealed, sent, failed, re-queued) are audited (core.audit).
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from core.audit import audited_history


class Channel(models.TextChoices):
    WEBHOOK = "webhook"
    EMAIL = "email"
    TELEGRAM = "telegram"


class AlertEvent(models.Model):
    """One change of an alert as the alerting app announced it (`trading.alerts.alert_changed`), or a reminder of
    an alert still open. The alert's fields are copied: the log reads the same after the alert moved on."""

    class Change(models.TextChoices):
        FIRED = "fired"
        REPEATED = "repeated"
        ACKNOWLEDGED = "acknowledged"
        RESOLVED = "resolved"
        REMINDER = "reminder", "reminder (still open after the repeat interval)"

    alert_id = models.BigIntegerField(db_index=True, help_text="trading.Alert id (no foreign key: the log outlives it)")
    change = models.CharField(max_length=15, choices=Change.choices)
    kind = models.CharField(max_length=40)
    severity = models.CharField(max_length=10)
    fingerprint = models.CharField(max_length=200, blank=True, default="")
    message = models.TextField()
    count = models.PositiveIntegerField(default=1)
    silenced = models.BooleanField(default=False)
    routed_to = models.JSONField(default=list, blank=True, help_text="channels this event was routed to")
    occurred_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-occurred_at", "-id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(change__in=["fired", "repeated", "acknowledged", "resolved", "reminder"]),
                name="notify_event_change_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"alert {self.alert_id} {self.change} [{self.severity}] {self.kind}"


class Notification(models.Model):
    """One message to one channel."""

    class Kind(models.TextChoices):
        ALERTS = "alerts"
        SUMMARY = "summary", "summary (flood control folded the excess)"
        TEST = "test"

    class State(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed", "failed (permanent error; re-queue after fixing the channel)"

    class Bucket(models.TextChoices):
        NOW = "now"
        QUIET = "quiet", "deferred by quiet hours"

    channel = models.CharField(max_length=10, choices=Channel.choices)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.ALERTS)
    bucket = models.CharField(max_length=10, choices=Bucket.choices, default=Bucket.NOW)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    subject = models.CharField(max_length=300, blank=True, default="")
    body = models.TextField(blank=True, default="", help_text="the text sent (rendered when sealed)")
    payload = models.JSONField(default=dict, blank=True, help_text="the structured message (webhook JSON)")
    event_count = models.PositiveIntegerField(default=0)
    requested_by = models.CharField(max_length=200, blank=True, default="", help_text="who asked (test messages)")
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    deliver_after = models.DateTimeField(help_text="not sent before (group wait, quiet hours, flood control)")
    sealed_at = models.DateTimeField(null=True, blank=True, help_text="when its content was fixed")
    attempts = models.PositiveIntegerField(default=0)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_attempt_at = models.DateTimeField(null=True, blank=True, help_text="after a failed attempt: the retry")
    last_error = models.TextField(blank=True, default="")
    sent_at = models.DateTimeField(null=True, blank=True)
    events = models.ManyToManyField(AlertEvent, through="NotificationItem", related_name="notifications")
    history = audited_history(excluded_fields=["payload", "body"])

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            models.Index(fields=["state", "deliver_after"], name="notify_due"),
            models.Index(fields=["channel", "sealed_at"], name="notify_channel_sealed"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(channel__in=["webhook", "email", "telegram"]), name="notify_channel"),
            models.CheckConstraint(condition=Q(state__in=["pending", "sent", "failed"]), name="notify_state"),
            models.CheckConstraint(condition=Q(kind__in=["alerts", "summary", "test"]), name="notify_kind"),
            models.CheckConstraint(
                condition=Q(state="sent", sent_at__isnull=False, sealed_at__isnull=False)
                | (~Q(state="sent") & Q(sent_at__isnull=True)),
                name="notify_sent_iff_sent_at",
            ),
            # At most one open (unsealed) message per channel and bucket: events join it.
            models.UniqueConstraint(
                fields=["channel", "bucket"],
                condition=Q(sealed_at__isnull=True, state="pending"),
                name="notify_one_open_per_channel_bucket",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.channel} #{self.pk} {self.kind} ({self.state})"


class NotificationItem(models.Model):
    """An event carried by a message."""

    notification = models.ForeignKey(Notification, on_delete=models.CASCADE, related_name="items")
    event = models.ForeignKey(AlertEvent, on_delete=models.CASCADE, related_name="items")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["notification", "event"], name="notify_item_unique")]

    def __str__(self) -> str:
        return f"notification {self.notification_id} carries event {self.event_id}"


class ChannelState(models.Model):
    """One row per channel (created by the migration): locked while grouping and flood decisions are made, and the
    last outcome, for the admin (where the "send a test notification" action lives)."""

    channel = models.CharField(max_length=10, choices=Channel.choices, primary_key=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True, default="")
    last_error_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["channel"]
        verbose_name = "channel"

    def __str__(self) -> str:
        return self.channel
