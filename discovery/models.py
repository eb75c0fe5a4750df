"""IP-range discovery: a team's CIDR ranges, swept politely for TLS services, and what was found."""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from keychest.tenancy import TeamOwnedModel

DEFAULT_PORTS = [443]
# Offered on the form besides 443 (implicit TLS, or a STARTTLS dialogue kcproto speaks).
COMMON_PORTS = [443, 8443, 993, 995, 465, 636, 5432, 587, 25, 389, 143, 110, 21, 5223, 9443]
DEFAULT_CADENCE = 7 * 24 * 3600


class IPRange(TeamOwnedModel):
    """A CIDR range (at most a /22) and the ports to look for TLS services on."""

    cidr = models.CharField(max_length=50)
    label = models.CharField(max_length=100, blank=True)
    ports = models.JSONField(default=list)
    # Swept by this team agent inside the team's network (private ranges), else by the SaaS.
    agent = models.ForeignKey("agents.Agent", on_delete=models.SET_NULL, null=True, blank=True, related_name="ranges")
    cadence = models.PositiveIntegerField(default=DEFAULT_CADENCE, help_text="seconds")
    # Connection attempts per second on this range (the global limit applies as well).
    rate = models.FloatField(default=10.0)
    next_sweep_at = models.DateTimeField(null=True, blank=True)
    claimed_until = models.DateTimeField(null=True, blank=True)
    last_sweep_at = models.DateTimeField(null=True, blank=True)
    last_sweep_seconds = models.FloatField(null=True, blank=True)
    last_sweep_attempts = models.PositiveIntegerField(null=True, blank=True)
    # An agent's sweep arriving in parts: its id, the parts received so far, when its first part
    # arrived. Vanished services are judged only once every part is in.
    partial_sweep = models.CharField(max_length=40, blank=True)
    partial_parts = models.JSONField(default=list, blank=True)
    partial_since = models.DateTimeField(null=True, blank=True)
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["team", "cidr"], condition=Q(removed_at=None), name="iprange_unique_active")
        ]
        indexes = [models.Index(fields=["next_sweep_at"], name="iprange_due", condition=Q(removed_at=None))]
        ordering = ["cidr", "id"]

    def __str__(self) -> str:
        return self.cidr


class FoundService(TeamOwnedModel):
    """A TLS service seen in a range (asked without SNI, or with a watched name), while it answers."""

    ip_range = models.ForeignKey(IPRange, on_delete=models.CASCADE, related_name="services")
    address = models.CharField(max_length=45)
    port = models.PositiveIntegerField()
    protocol = models.CharField(max_length=10, default="tls")
    sni = models.CharField(max_length=253, blank=True)
    leaf_sha256 = models.CharField(max_length=64, blank=True)
    subject = models.CharField(max_length=500, blank=True)
    issuer = models.CharField(max_length=500, blank=True)
    names = models.JSONField(default=list, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)
    tls_version = models.CharField(max_length=16, blank=True)
    first_seen = models.DateTimeField()
    last_seen = models.DateTimeField()
    vanished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["ip_range", "address", "port", "sni"], name="foundservice_unique")
        ]
        ordering = ["address", "port", "sni", "id"]

    def __str__(self) -> str:
        return f"{self.address}:{self.port}"
