"""API keys, claims (keys asked for by scripts and confirmed by email), pending enrolments, audit."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import models
from django.utils import timezone

from keychest.tenancy import TeamOwnedModel


class Scope(models.TextChoices):
    READ = "read", "Read"
    ENROL = "enrol", "Enrol servers and certificates"
    MANAGE = "manage", "Manage (change and delete)"


class KeySource(models.TextChoices):
    DASHBOARD = "dashboard", "Created in the dashboard"
    API = "api", "Created through the API"
    CLAIM = "claim", "Claimed by a script"


class ApiKey(TeamOwnedModel):
    """A secret that lets a script act for one user in one team, within its scopes."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_keys")
    name = models.CharField(max_length=100, blank=True)
    # Only the SHA-256 of the whole key is stored; keys are long random strings (or at least
    # 16 client-chosen characters), so a fast hash is enough and lets look-ups use an index.
    key_hash = models.CharField(max_length=64, unique=True)
    # What is shown to people to recognise the key, e.g. "kc_ab12cd34".
    display_prefix = models.CharField(max_length=16)
    scopes = models.JSONField(default=list)
    source = models.CharField(max_length=10, choices=KeySource.choices, default=KeySource.DASHBOARD)
    # Claimed keys: the address that was asked to confirm, and when it did.
    claim_email = models.EmailField(blank=True)
    confirmed_at = models.DateTimeField(null=True, blank=True)
    created_ip = models.GenericIPAddressField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    last_used_ip = models.GenericIPAddressField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["user", "confirmed_at"], name="apikey_user_confirmed")]

    def __str__(self) -> str:
        return f"{self.display_prefix}… ({self.user_id})"

    def is_confirmed(self) -> bool:
        return self.confirmed_at is not None

    def unconfirmed_expires_at(self) -> datetime:
        return self.created_at + timedelta(days=settings.KEYCHEST_CLAIM_MAX_AGE_DAYS)

    def is_usable(self, now: datetime | None = None) -> bool:
        """Not revoked, and either confirmed or still inside its confirmation window."""
        if self.revoked_at is not None:
            return False
        if self.confirmed_at is not None:
            return True
        return (now or timezone.now()) < self.unconfirmed_expires_at()

    def has_scope(self, scope: str) -> bool:
        # manage implies enrol and read; enrol does not imply read of other people's items.
        if scope in self.scopes:
            return True
        return Scope.MANAGE in self.scopes and scope in (Scope.READ, Scope.ENROL)


class ClaimKind(models.TextChoices):
    NEW_ACCOUNT = "new_account", "New account"
    NEW_KEY = "new_key", "New key for an existing account"


class ClaimState(models.TextChoices):
    PENDING = "pending", "Waiting for confirmation"
    CONFIRMED = "confirmed", "Confirmed"
    REVOKED = "revoked", "Revoked"
    BLOCKED = "blocked", "Blocked"
    EXPIRED = "expired", "Expired"


class Claim(TeamOwnedModel):
    """A script's request for a key on behalf of an email address, waiting for that address."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_claims")
    api_key = models.OneToOneField(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="claim")
    email = models.EmailField()
    kind = models.CharField(max_length=12, choices=ClaimKind.choices)
    state = models.CharField(max_length=10, choices=ClaimState.choices, default=ClaimState.PENDING)
    requested_ip = models.GenericIPAddressField(null=True, blank=True)
    user_agent = models.CharField(max_length=200, blank=True)
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return f"claim by {self.email} ({self.state})"

    def expires_at(self) -> datetime:
        return self.created_at + timedelta(days=settings.KEYCHEST_CLAIM_MAX_AGE_DAYS)

    def is_pending(self, now: datetime | None = None) -> bool:
        return self.state == ClaimState.PENDING and (now or timezone.now()) < self.expires_at()


class ClaimBlock(models.Model):
    """An address whose owner asked never to be sent automatic key requests again."""

    email = models.EmailField(unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    created_ip = models.GenericIPAddressField(null=True, blank=True)

    def __str__(self) -> str:
        return self.email


class EnrolmentKind(models.TextChoices):
    SERVER = "server", "Server"
    CERTIFICATE = "certificate", "Certificate"


class PendingEnrolment(TeamOwnedModel):
    """Something an unconfirmed key enrolled: held here, never scanned, until the key is confirmed."""

    api_key = models.ForeignKey(ApiKey, on_delete=models.CASCADE, related_name="pending_enrolments")
    kind = models.CharField(max_length=12, choices=EnrolmentKind.choices)
    host = models.CharField(max_length=253, blank=True)
    port = models.PositiveIntegerField(null=True, blank=True)
    # Certificates: the DER bytes and their SHA-256, so the status call can answer before confirmation.
    der = models.BinaryField(null=True, blank=True)
    sha256 = models.CharField(max_length=64, blank=True)
    not_after = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["created_at", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["api_key", "kind", "host", "port", "sha256"], name="pendingenrolment_unique_item"
            )
        ]

    def __str__(self) -> str:
        if self.kind == EnrolmentKind.SERVER:
            return f"{self.host}:{self.port}" if self.port else self.host
        return f"certificate {self.sha256[:16]}"


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


class UploadedCertificate(TeamOwnedModel):
    """A certificate a team uploaded (API or deploy hook); the certificate itself is in the store."""

    certificate = models.ForeignKey("certificates.Certificate", on_delete=models.CASCADE, related_name="+")
    added_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    api_key = models.ForeignKey(ApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+")

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [models.UniqueConstraint(fields=["team", "certificate"], name="uploadedcert_unique")]

    def __str__(self) -> str:
        return f"upload {self.certificate_id} by team {self.team_id}"
