"""The API's audit trail and calendar feeds.

API keys and claims live with the accounts (`keychest.accounts.models`), held enrolments with
monitors (`monitors.models.PendingEnrolment`) and uploaded certificates with the certificate
store (`certificates.models.UploadedCertificate`); they are re-exported here for the API code.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models

from certificates.models import UploadedCertificate as UploadedCertificate
from keychest.accounts.models import ApiKey as ApiKey
from keychest.accounts.models import Claim as Claim
from keychest.accounts.models import ClaimBlock as ClaimBlock
from keychest.accounts.models import ClaimKind as ClaimKind
from keychest.accounts.models import ClaimState as ClaimState
from keychest.accounts.models import KeySource as KeySource
from keychest.accounts.models import Scope as Scope
from keychest.tenancy import TeamOwnedModel
from monitors.models import EnrolmentKind as EnrolmentKind
from monitors.models import PendingEnrolment as PendingEnrolment


class AuditAction(models.TextChoices):
    KEY_CREATED = "key_created", "API key created"
    KEY_REVOKED = "key_revoked", "API key revoked"
    CLAIM_REQUESTED = "claim_requested", "A script claimed an API key"
    CLAIM_REPEATED = "claim_repeated", "A script repeated a claim"
    CLAIM_REFUSED = "claim_refused", "A claim was refused"
    CLAIM_EMAIL_SENT = "claim_email_sent", "Confirmation email sent"
    CLAIM_EMAIL_FAILED = "claim_email_failed", "Confirmation email failed"
    CLAIM_CONFIRMED = "claim_confirmed", "Claim confirmed"
    CLAIM_REVOKED = "claim_revoked", "Claim revoked"
    CLAIM_BLOCKED = "claim_blocked", "Automatic keys blocked"
    CLAIM_UNBLOCKED = "claim_unblocked", "Automatic keys allowed again"
    CLAIM_EXPIRED = "claim_expired", "Unconfirmed key expired"
    ENROLLED = "enrolled", "Enrolled through the API"
    ENROLMENT_HELD = "enrolment_held", "Enrolment held until the key is confirmed"
    ENROLMENT_RELEASED = "enrolment_released", "Held enrolment became a watched item"


class AuditEntry(TeamOwnedModel):
    """Who did what to API access, from where and when; shown to the team on the API keys page."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")
    key_prefix = models.CharField(max_length=16, blank=True)
    action = models.CharField(max_length=24, choices=AuditAction.choices)
    ip = models.GenericIPAddressField(null=True, blank=True)
    detail = models.CharField(max_length=300, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["team", "-created_at"], name="auditentry_team_recent")]

    def __str__(self) -> str:
        return f"{self.action} {self.key_prefix}"


class CalendarFeed(models.Model):
    """A user's secret URL for the ICS calendar of renewal dates (calendar apps cannot log in)."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="calendar_feed")
    token = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"calendar of {self.user_id}"
