"""Events: state changes stored as rows in the same transaction as the change that caused them.

The domain apps (certificates, monitors) record them through `events.services`; notifications
(above those apps) delivers them. The table keeps its first name, `notifications_event`.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone

from keychest.tenancy import TeamOwnedModel


class EventKind(models.TextChoices):
    CERTIFICATE_ISSUED = "certificate_issued", "New certificate issued (CT)"
    UNEXPECTED_ISSUANCE = "unexpected_issuance", "Unexpected certificate issued (CT)"
    CERTIFICATE_EXPIRING = "certificate_expiring", "Certificate expiring"
    CERTIFICATE_EXPIRED = "certificate_expired", "Certificate expired"
    CERTIFICATE_CHANGED = "certificate_changed", "Certificate changed on a server"
    ISSUER_CHANGED = "issuer_changed", "Issuer changed"
    SERVER_DOWN = "server_down", "Server down or TLS failure"
    SERVER_RECOVERED = "server_recovered", "Server recovered"
    FINDING_OPENED = "finding_opened", "Problem found"
    FINDING_RESOLVED = "finding_resolved", "Problem resolved"
    NEWER_CERTIFICATE_NOT_DEPLOYED = "newer_certificate_not_deployed", "Renewed but not deployed"
    IPS_DISAGREE = "ips_disagree", "Addresses serve different certificates"
    HOST_DISCOVERED = "host_discovered", "New host discovered (CT)"
    DOMAIN_EXPIRING = "domain_expiring", "Domain registration expiring"
    AGENT_SILENT = "agent_silent", "Scanning agent silent"
    SERVICE_FOUND = "service_found", "New TLS service found in an IP range"
    SERVICE_VANISHED = "service_vanished", "TLS service vanished from an IP range"


class Severity(models.TextChoices):
    INFO = "info", "Info"
    WARNING = "warning", "Warning"
    ERROR = "error", "Error"
    CRITICAL = "critical", "Critical"


class Event(TeamOwnedModel):
    """Something a team may want to hear about, recorded once per (team, dedup_key)."""

    kind = models.CharField(max_length=40, choices=EventKind.choices)
    severity = models.CharField(max_length=10, choices=Severity.choices, default=Severity.INFO)
    # Short human label of what the event is about, e.g. "example.com:443" or "*.example.com".
    subject = models.CharField(max_length=300)
    # Stable identity of the happening: a retried scan or a re-read CT entry maps to the same key.
    dedup_key = models.CharField(max_length=300)
    payload = models.JSONField(default=dict, blank=True)
    occurred_at = models.DateTimeField(default=timezone.now)
    # Set when the event has been attached to the deliveries of every matching channel.
    dispatched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "notifications_event"
        constraints = [models.UniqueConstraint(fields=["team", "dedup_key"], name="event_unique_team_dedup")]
        indexes = [
            models.Index(fields=["team", "-occurred_at"], name="event_team_recent"),
            models.Index(fields=["id"], condition=Q(dispatched_at=None), name="event_undispatched"),
        ]
        ordering = ["-occurred_at", "-id"]

    def __str__(self) -> str:
        return f"{self.kind}: {self.subject}"

    @property
    def alert_kind(self) -> str:
        """The kind channels and people filter on: the scanner reports expiry as findings."""
        if self.kind == EventKind.FINDING_OPENED and isinstance(self.payload, dict):
            return FINDING_ALERT_KINDS.get(str(self.payload.get("code")), self.kind)
        return self.kind


FINDING_ALERT_KINDS = {
    "renewal_due": EventKind.CERTIFICATE_EXPIRING,
    "renewal_overdue": EventKind.CERTIFICATE_EXPIRING,
    "expired": EventKind.CERTIFICATE_EXPIRED,
}
