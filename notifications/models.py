"""Channels, deliveries, per-user notification preferences and report sends.

The event rows themselves live in `events/` (the domain apps below this one record them);
they are re-exported here for the code that delivers them. Events are state changes stored as rows in the same transaction as the change that caused
them. Alerts, digests and webhooks are delivered from these rows, so a crash between the change
and the delivery loses nothing, and a retried delivery finds the row already handled.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from events.models import FINDING_ALERT_KINDS as FINDING_ALERT_KINDS
from events.models import Event as Event
from events.models import EventKind as EventKind
from events.models import Severity as Severity
from keychest.secretbox import unseal
from keychest.tenancy import TeamOwnedModel


class ChannelKind(models.TextChoices):
    EMAIL = "email", "Email"
    WEBHOOK = "webhook", "Webhook (signed JSON)"
    SLACK = "slack", "Slack-compatible incoming webhook"
    APPRISE = "apprise", "Apprise (Teams, Telegram, Discord, ntfy, Gotify, PagerDuty, …)"


def new_channel_secret() -> str:
    return secrets.token_hex(32)


class Channel(TeamOwnedModel):
    """Where a team's alerts go: email to members or addresses, a signed webhook, Slack or Apprise."""

    kind = models.CharField(max_length=10, choices=ChannelKind.choices)
    name = models.CharField(max_length=100)
    # Webhook and Slack: the target URL (checked against private addresses when sending).
    url = models.URLField(max_length=2000, blank=True)
    # Apprise: the service URL (it holds the service's tokens), sealed with keychest.secretbox,
    # and the form shown back (Apprise's own privacy mode: tokens cut to their ends).
    apprise_url_sealed = models.TextField(blank=True)
    apprise_url_masked = models.CharField(max_length=500, blank=True)
    # Webhook: the HMAC-SHA256 key the receiver verifies the body with.
    secret = models.CharField(max_length=64, default=new_channel_secret)
    # Email: every member of the team, or the chosen ones, plus extra addresses.
    email_all_members = models.BooleanField(default=True)
    email_members = models.ManyToManyField(settings.AUTH_USER_MODEL, blank=True, related_name="+")
    email_addresses = models.TextField(blank=True, help_text="One address per line.")
    # Event kinds this channel carries; empty means all of them.
    event_kinds = models.JSONField(default=list, blank=True)
    # Messages per hour at most; events arriving meanwhile wait and go out together.
    rate_limit_per_hour = models.PositiveIntegerField(default=20)
    # Events arriving within this many seconds of the first one become one message.
    grouping_seconds = models.PositiveIntegerField(default=60)
    enabled = models.BooleanField(default=True)
    disabled_at = models.DateTimeField(null=True, blank=True)
    disabled_reason = models.CharField(max_length=500, blank=True)
    # Channels are never deleted while deliveries reference them: their history stays readable.
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.name}"

    def carries(self, kind: str) -> bool:
        return not self.event_kinds or kind in self.event_kinds

    def extra_addresses(self) -> list[str]:
        return [line.strip().lower() for line in self.email_addresses.splitlines() if line.strip()]

    def apprise_url(self) -> str:
        """The Apprise URL in clear (for sending only; never shown, never logged)."""
        return unseal(self.apprise_url_sealed)

    def url_masked(self) -> str:
        """The webhook or Slack URL as admins see it: its path and query are the credential, so
        only the scheme, the host and the last characters show (security finding 8)."""
        return url_mask(self.url)


def url_mask(url: str) -> str:
    """`https://hooks.slack.com/…Ab12`: enough to tell two hooks apart, not to call one."""
    if not url:
        return ""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    rest = url.split(host + port, 1)[-1] if host else url
    tail = rest[-4:] if len(rest.strip("/")) > 12 else ""
    return f"{parts.scheme}://{host}{port}/…{tail}"


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class Delivery(TeamOwnedModel):
    """One message to one channel, carrying one event or a whole burst of them."""

    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    status = models.CharField(max_length=10, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    # While collecting, new events of the channel join this delivery (a burst becomes one message).
    collecting = models.BooleanField(default=True)
    is_test = models.BooleanField(default=False)
    # Not before: the end of the grouping window, a rate-limit wait, or the next back-off step.
    send_after = models.DateTimeField(default=timezone.now)
    attempts = models.PositiveIntegerField(default=0)
    first_attempt_at = models.DateTimeField(null=True, blank=True)
    # A claimed delivery belongs to one worker until then; a crashed worker's claim runs out.
    claimed_until = models.DateTimeField(null=True, blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    # Email: addresses already sent to, so a retry after a partial failure skips them.
    sent_to = models.JSONField(default=list, blank=True)
    events = models.ManyToManyField(Event, through="DeliveryItem", related_name="deliveries")

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["channel"], condition=Q(collecting=True), name="delivery_one_collecting_per_channel"
            )
        ]
        indexes = [models.Index(fields=["status", "send_after"], name="delivery_due")]
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"delivery {self.uuid} to {self.channel_id} ({self.status})"

    def gives_up_at(self) -> datetime | None:
        if self.first_attempt_at is None:
            return None
        return self.first_attempt_at + timedelta(seconds=settings.KEYCHEST_DELIVERY_GIVE_UP_SECONDS)


class DeliveryItem(models.Model):
    """An event in a delivery; (channel, event) is unique, so no channel gets an event twice."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="items")
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["channel", "event"], name="deliveryitem_unique_channel_event")]


class DeliveryAttempt(models.Model):
    """One try at sending a delivery: when, how long, and what went wrong."""

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempts_log")
    started_at = models.DateTimeField(default=timezone.now)
    duration_ms = models.PositiveIntegerField(default=0)
    ok = models.BooleanField(default=False)
    permanent = models.BooleanField(default=False)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)

    class Meta:
        ordering = ["-started_at", "-id"]


class DigestMode(models.TextChoices):
    IMMEDIATE = "immediate", "Immediately"
    DAILY = "daily", "Daily summary"
    OFF = "off", "No alert emails"


class Weekday(models.IntegerChoices):
    MONDAY = 1, "Monday"
    TUESDAY = 2, "Tuesday"
    WEDNESDAY = 3, "Wednesday"
    THURSDAY = 4, "Thursday"
    FRIDAY = 5, "Friday"
    SATURDAY = 6, "Saturday"
    SUNDAY = 7, "Sunday"


class NotificationPreferences(models.Model):
    """One user's choices: the weekly report's schedule and which alerts reach them, and how."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_prefs")
    weekly_report_enabled = models.BooleanField(default=True)
    weekly_report_day = models.PositiveSmallIntegerField(choices=Weekday.choices, default=Weekday.MONDAY)
    weekly_report_hour = models.PositiveSmallIntegerField(default=8)
    # When nothing is due and nothing is broken: send a short "all good" report, or nothing.
    send_all_good = models.BooleanField(default=True)
    # Alert kinds this user receives by email; empty means all of them.
    alert_kinds = models.JSONField(default=list, blank=True)
    digest_mode = models.CharField(max_length=10, choices=DigestMode.choices, default=DigestMode.IMMEDIATE)
    last_nudge_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"notification preferences of {self.user_id}"

    def wants(self, kind: str) -> bool:
        return not self.alert_kinds or kind in self.alert_kinds


class ReportKind(models.TextChoices):
    WEEKLY = "weekly", "Weekly report"
    NUDGE = "nudge", "Please add servers"
    DIGEST = "digest", "Daily alert summary"


class ReportStatus(models.TextChoices):
    CLAIMED = "claimed", "Claimed"
    SENT = "sent", "Sent"
    SKIPPED = "skipped", "Skipped (nothing to say)"


class ReportSend(models.Model):
    """The once-per-period guard of a scheduled email: (user, kind, period) is unique.

    Claimed rows carry a lease: a worker that crashes after claiming leaves a row whose lease
    runs out, and the next scheduler run claims it again, so a crash never skips a period.
    """

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=10, choices=ReportKind.choices)
    # The first day of the period in the user's zone: the week's Monday, or the digest's day.
    period = models.DateField()
    status = models.CharField(max_length=10, choices=ReportStatus.choices, default=ReportStatus.CLAIMED)
    claim_token = models.CharField(max_length=32, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    # After a failed send (SMTP down), not before this time.
    retry_after = models.DateTimeField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "kind", "period"], name="reportsend_unique_period")]
        indexes = [models.Index(fields=["kind", "period", "status"], name="reportsend_period_status")]

    def __str__(self) -> str:
        return f"{self.kind} {self.period} for {self.user_id}: {self.status}"


class RecipientConfirmation(TeamOwnedModel):
    """An outside address on a team's email channel, and whether its holder agreed to get mail
    (security finding 7): until `confirmed_at` it gets the one confirmation email and nothing else."""

    email = models.EmailField()
    confirmed_at = models.DateTimeField(null=True, blank=True)
    last_sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "email"], name="recipientconfirmation_unique")]

    def __str__(self) -> str:
        return f"{self.email} ({'confirmed' if self.confirmed_at else 'waiting'})"
