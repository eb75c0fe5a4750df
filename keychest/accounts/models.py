"""Users, teams, memberships and invitations: who may see and change what."""

from __future__ import annotations

import uuid
import zoneinfo
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import AbstractUser, BaseUserManager
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from keychest.tenancy import TeamOwnedModel


def validate_timezone(value: str) -> None:
    if value not in zoneinfo.available_timezones():
        raise ValidationError(f"{value!r} is not a known time zone (use an IANA name like Europe/London).")


class UserManager(BaseUserManager["User"]):
    """Users are identified by email; there is no username."""

    use_in_migrations = True

    def _create(self, email: str, password: str | None, **extra: Any) -> User:
        if not email:
            raise ValueError("An email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_user(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra.setdefault("is_staff", False)
        extra.setdefault("is_superuser", False)
        return self._create(email, password, **extra)

    def create_superuser(self, email: str, password: str | None = None, **extra: Any) -> User:
        extra["is_staff"] = True
        extra["is_superuser"] = True
        return self._create(email, password, **extra)


class User(AbstractUser):
    """A person who signs in with an email address."""

    username = None  # type: ignore[assignment,misc]
    email = models.EmailField("email address", unique=True)
    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    timezone = models.CharField(max_length=64, default="UTC", validators=[validate_timezone])
    notification_email = models.EmailField(
        blank=True, help_text="Where reports and alerts go; empty means the login email."
    )
    # Set when the holder of notification_email confirmed it (or it is one of the user's verified
    # addresses); until then mail goes to the login email (security finding 7).
    notification_email_confirmed_at = models.DateTimeField(null=True, blank=True)

    USERNAME_FIELD = "email"
    REQUIRED_FIELDS: list[str] = []  # type: ignore[misc]

    objects = UserManager()  # type: ignore[misc,assignment]

    def __str__(self) -> str:
        return self.email

    @property
    def tzinfo(self) -> zoneinfo.ZoneInfo:
        try:
            return zoneinfo.ZoneInfo(self.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            return zoneinfo.ZoneInfo("UTC")

    def notification_address(self) -> str:
        """Where reports and alerts go: notification_email once confirmed, else the login email."""
        if self.notification_email and self.notification_email_confirmed_at is not None:
            return self.notification_email
        return self.email


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"
    VIEWER = "viewer", "Viewer"


ROLE_RANK = {Role.VIEWER: 0, Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


def role_at_least(role: str, minimum: str) -> bool:
    return ROLE_RANK[Role(role)] >= ROLE_RANK[Role(minimum)]


class TeamQuerySet(models.QuerySet["Team"]):
    def for_user(self, user: Any) -> TeamQuerySet:
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(memberships__user=user)


class Team(models.Model):
    """A tenant: everything watched belongs to exactly one team."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    name = models.CharField(max_length=100)
    is_personal = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TeamQuerySet.as_manager()

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    """A user's place in a team, with a role."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="memberships")
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["team", "user"], name="membership_unique_team_user")]
        ordering = ["created_at", "id"]

    def __str__(self) -> str:
        return f"{self.user} in {self.team} ({self.role})"

    def has_role(self, minimum: str) -> bool:
        return role_at_least(self.role, minimum)


class Invitation(models.Model):
    """An invitation of an email address into a team, accepted through a signed link."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey(Team, on_delete=models.CASCADE, related_name="invitations")
    email = models.EmailField()
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "id"]

    def __str__(self) -> str:
        return f"{self.email} → {self.team}"

    def expires_at(self) -> datetime:
        return self.created_at + timedelta(days=settings.KEYCHEST_INVITATION_MAX_AGE_DAYS)

    def is_pending(self, now: datetime | None = None) -> bool:
        now = now or timezone.now()
        return self.accepted_at is None and self.revoked_at is None and now < self.expires_at()


# --- API keys and claims (keys asked for by scripts and confirmed by email) ------------------
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
        db_table = "api_apikey"  # the table keeps the name it had in api/ (issue 20)
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
        db_table = "api_claim"
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

    class Meta:
        db_table = "api_claimblock"

    def __str__(self) -> str:
        return self.email
