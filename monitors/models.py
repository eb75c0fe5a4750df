"""What a team watches: servers (host, port, protocol) and domains (a name and its sub-domains)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q

from keychest.tenancy import TeamOwnedModel


class WatchedDomain(TeamOwnedModel):
    """A domain a team watches in Certificate Transparency: the name itself and every sub-domain."""

    # Normalised (lower-case, IDNA A-label, no trailing dot), e.g. "example.com".
    domain = models.CharField(max_length=253)
    include_subdomains = models.BooleanField(default=True)
    # New hosts discovered under this domain become watched servers automatically.
    auto_watch = models.BooleanField(default=False)
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    removed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["team", "domain"], condition=Q(removed_at=None), name="watcheddomain_unique_active"
            )
        ]
        ordering = ["domain", "id"]

    def __str__(self) -> str:
        return self.domain


class DiscoveredHost(TeamOwnedModel):
    """A host name seen in a certificate under a watched domain (sub-domain discovery)."""

    watched_domain = models.ForeignKey(WatchedDomain, on_delete=models.CASCADE, related_name="discovered_hosts")
    name = models.CharField(max_length=253)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()
    # Set when the host became a watched server (by hand or by auto-watch).
    watched_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["watched_domain", "name"], name="discoveredhost_unique_name")]
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name
