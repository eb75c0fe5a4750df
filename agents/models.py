"""Scanning agents: programs a team runs inside its own network to scan what the SaaS cannot reach."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import models
from django.db.models import Q

from keychest.tenancy import TeamOwnedModel

DEFAULT_CADENCE = 300
MIN_CADENCE = 60
MAX_CADENCE = 24 * 3600
ENROLMENT_TOKEN_HOURS = 24
# An agent's clock this far off the server's is reported (certificate dates are judged by the server's).
CLOCK_SKEW_WARN_SECONDS = 60.0


class Agent(TeamOwnedModel):
    """One enrolled (or waiting to enrol) `keychest-agent` of a team; secrets are stored as SHA-256."""

    name = models.CharField(max_length=100)
    # The one-time enrolment token (hash), cleared once exchanged for the agent key.
    token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    token_expires_at = models.DateTimeField(null=True, blank=True)
    # The agent key (hash): it may only fetch this agent's work and report results for it.
    key_hash = models.CharField(max_length=64, blank=True, db_index=True)
    key_prefix = models.CharField(max_length=16, blank=True)
    enrolled_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    # How often the agent asks for work; silent for twice this long raises `agent_silent`.
    cadence = models.PositiveIntegerField(default=DEFAULT_CADENCE, help_text="seconds")
    last_contact_at = models.DateTimeField(null=True, blank=True)
    last_ip = models.GenericIPAddressField(null=True, blank=True)
    version = models.CharField(max_length=40, blank=True)
    # The agent's clock minus the server's, in seconds, from its last request.
    clock_skew = models.FloatField(null=True, blank=True)
    # Set when `agent_silent` was raised for the current silence; cleared on the next contact.
    silent_since = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["key_hash"], condition=~Q(key_hash=""), name="agent_unique_key"),
        ]
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None and self.enrolled_at is not None

    def state(self, now: datetime) -> str:
        """revoked, waiting (not enrolled yet), silent (no contact for 2x cadence) or ok."""
        if self.revoked_at is not None:
            return "revoked"
        if self.enrolled_at is None:
            return "waiting"
        if self.is_silent(now):
            return "silent"
        return "ok"

    def is_silent(self, now: datetime) -> bool:
        if not self.is_active:
            return False
        seen = self.last_contact_at or self.enrolled_at
        return seen is not None and now - seen > timedelta(seconds=2 * self.cadence)

    def skew_reported(self) -> bool:
        return self.clock_skew is not None and abs(self.clock_skew) > CLOCK_SKEW_WARN_SECONDS
