"""API keys and the claim flow: writes that touch keys, claims, users and the audit trail.

A script may claim a key for an email address with no account set-up. Until the owner of the
address confirms by email, the key can only enrol items (held in `PendingEnrolment`, never
scanned) and read their status; once confirmed, the held items become ordinary watched items
of the user's personal team. Unconfirmed keys and their held items expire after
KEYCHEST_CLAIM_MAX_AGE_DAYS.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.core import signing
from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, models, transaction
from django.urls import reverse
from django.utils import timezone

from api import emails
from api.audit import audit_record
from api.enrolment import enrolments_release
from api.keycache import auth_epoch_bump, key_load
from api.keys import key_display_prefix, key_generate, key_hash, key_is_well_formed
from api.models import (
    ApiKey,
    AuditAction,
    Claim,
    ClaimBlock,
    ClaimKind,
    ClaimState,
    KeySource,
    PendingEnrolment,
    Scope,
)
from keychest.accounts.models import Membership, Role, Team, User, role_at_least
from keychest.accounts.services import personal_team_ensure, user_create
from keychest.ratelimit import Limit, hit, peek

log = logging.getLogger(__name__)

CLAIM_SALT = "keychest.api.claim"
DAY = 86400


# --- keys -------------------------------------------------------------------------------------
@dataclass(frozen=True)
class NewKey:
    """A key just made: the row and the secret, which is shown this once and never stored."""

    api_key: ApiKey
    secret: str


def scopes_clean(scopes: list[str] | tuple[str, ...]) -> list[str]:
    cleaned = sorted({str(s) for s in scopes})
    unknown = [s for s in cleaned if s not in Scope.values]
    if unknown or not cleaned:
        raise ValidationError(f"Scopes must be some of {', '.join(Scope.values)}.")
    return cleaned


def apikey_create(
    *,
    team: Team,
    user: User,
    name: str = "",
    scopes: list[str],
    ip: str | None = None,
    source: str = KeySource.DASHBOARD,
    parent: ApiKey | None = None,
) -> NewKey:
    """A confirmed key for `user` in `team`; members and up may make keys, within their own role.
    A key made with another key (`parent`, the API caller's) gets no scope the parent lacks."""
    membership = Membership.objects.filter(team=team, user=user).first()
    if membership is None or not membership.has_role(Role.MEMBER):
        raise PermissionDenied("Viewers cannot create API keys.")
    cleaned = scopes_clean(scopes)
    if parent is not None and not all(parent.has_scope(s) for s in cleaned):
        raise PermissionDenied("A key cannot make a key with more scopes than its own.")
    secret = key_generate()
    with transaction.atomic():
        api_key = ApiKey.objects.create(
            team=team,
            user=user,
            name=name.strip()[:100],
            key_hash=key_hash(secret),
            display_prefix=key_display_prefix(secret),
            scopes=cleaned,
            source=source,
            confirmed_at=timezone.now(),
            created_ip=_ip(ip),
        )
        audit_record(
            team=team,
            action=AuditAction.KEY_CREATED,
            user=user,
            api_key=api_key,
            ip=ip,
            detail=f"scopes {', '.join(cleaned)}",
        )
    return NewKey(api_key=api_key, secret=secret)


def apikey_revoke(*, api_key: ApiKey, by: User, ip: str | None = None) -> ApiKey:
    """Revoke a key: its own user may, and so may admins and owners of its team."""
    if api_key.user_id != by.pk:
        membership = Membership.objects.filter(team_id=api_key.team_id, user=by).first()
        if membership is None or not membership.has_role(Role.ADMIN):
            raise PermissionDenied("Only admins can revoke other people's keys.")
    with transaction.atomic():
        updated = ApiKey.objects.filter(pk=api_key.pk, revoked_at=None).update(revoked_at=timezone.now())
        api_key.refresh_from_db()
        if updated:
            auth_epoch_bump()
            PendingEnrolment.objects.filter(api_key=api_key).delete()
            Claim.objects.filter(api_key=api_key, state=ClaimState.PENDING).update(
                state=ClaimState.REVOKED, decided_at=timezone.now()
            )
            audit_record(team=api_key.team, action=AuditAction.KEY_REVOKED, user=by, api_key=api_key, ip=ip)
    return api_key


def apikey_find(secret: str) -> ApiKey | None:
    """The key row for a presented secret, with its user, team and the user's role in that team
    (`member_role`): one hand-written query (api/keycache.py), never cached."""

    if not secret or len(secret) > 128:
        return None
    record = key_load(key_hash(secret))
    return record.api_key() if record is not None else None


def apikey_touch(*, api_key: ApiKey, ip: str | None, now: datetime | None = None) -> bool:
    """Record use at most once a minute per key (across processes), so busy scripts do not write
    on every request. True when this call wrote."""
    now = now or timezone.now()
    if api_key.last_used_at is not None and now - api_key.last_used_at <= timedelta(seconds=60):
        return False
    recent = models.Q(last_used_at__isnull=False) & models.Q(last_used_at__gt=now - timedelta(seconds=60))
    ApiKey.objects.filter(pk=api_key.pk).exclude(recent).update(last_used_at=now, last_used_ip=_ip(ip))
    api_key.last_used_at = now
    return True


def key_role_allows(role: str | None, scope: str) -> bool:
    """What a team role lets a person (or their key) do: viewers read, members enrol and manage."""
    if role is None:
        return False
    minimum = Role.VIEWER if scope == Scope.READ else Role.MEMBER
    return role_at_least(role, minimum)


# --- the claim flow ---------------------------------------------------------------------------
class ClaimStatus:
    """The statuses existing scripts already understand (PRODUCT.md), plus `invalid-api-key`."""

    CREATED = "created"
    SUCCESS = "success"
    NOT_ALLOWED = "not-allowed"
    TOO_MANY = "too-many"
    INVALID_EMAIL = "invalid-email"
    INVALID_KEY = "invalid-api-key"


HTTP_STATUS = {
    ClaimStatus.CREATED: 201,
    ClaimStatus.SUCCESS: 200,
    ClaimStatus.NOT_ALLOWED: 403,
    ClaimStatus.TOO_MANY: 429,
    ClaimStatus.INVALID_EMAIL: 400,
    ClaimStatus.INVALID_KEY: 400,
}


@dataclass(frozen=True)
class ClaimResult:
    status: str
    email: str = ""
    api_key: str = ""

    @property
    def http_status(self) -> int:
        return HTTP_STATUS[self.status]


def _limits() -> dict[str, Limit]:
    return {
        "global": Limit("claim-global", settings.KEYCHEST_CLAIM_GLOBAL_PER_HOUR, 3600),
        "claims_ip": Limit("claim-ip", settings.KEYCHEST_CLAIM_PER_IP_PER_HOUR, 3600),
        "accounts_ip": Limit("claim-accounts-ip", settings.KEYCHEST_CLAIM_ACCOUNTS_PER_IP_PER_DAY, DAY),
        "emails_address": Limit("claim-emails-address", settings.KEYCHEST_CLAIM_EMAILS_PER_ADDRESS_PER_DAY, DAY),
    }


def _ip(ip: str | None) -> str | None:
    return ip if ip and ip != "unknown" else None


def email_clean(email: str) -> str | None:
    email = (email or "").strip().lower()
    if len(email) > 254:
        return None
    try:
        validate_email(email)
    except ValidationError:
        return None
    return email


def _account_is_dormant(user: User) -> bool:
    """Made by a claim and never confirmed: no password and no verified address."""
    from allauth.account.models import EmailAddress

    if user.has_usable_password():
        return False
    return not EmailAddress.objects.filter(user=user, verified=True).exists()


def claim_create(*, email: str, secret: str | None, ip: str | None, user_agent: str = "") -> ClaimResult:
    """A script asks for a key for `email`. The answer never says whether the address has an account."""
    clean_email = email_clean(email)
    if clean_email is None:
        return ClaimResult(ClaimStatus.INVALID_EMAIL)
    if secret is not None and not key_is_well_formed(secret):
        return ClaimResult(ClaimStatus.INVALID_KEY, email=clean_email)
    limits = _limits()
    # Per client first, the global cap last (security finding 6): claims refused for their IP
    # or their address must not use up everyone's budget. Every attempt counts here, a repeated
    # one too (each writes an audit row). Only the first refusal of a window is audited, so a
    # flood of refused claims writes no more rows than the budget allows.
    per_ip = hit(limits["claims_ip"], _ip(ip) or "unknown")
    if not per_ip.allowed:
        if per_ip.used == per_ip.limit + 1:
            audit_record(team=None, action=AuditAction.CLAIM_REFUSED, ip=ip, detail="claims per IP per hour")
        return ClaimResult(ClaimStatus.TOO_MANY, email=clean_email)
    if secret is not None:
        existing = ApiKey.objects.select_related("team", "user").filter(key_hash=key_hash(secret)).first()
        if existing is not None:
            return _claim_repeated(existing, clean_email, ip)
    else:
        secret = key_generate()

    if ClaimBlock.objects.filter(email=clean_email).exists():
        audit_record(team=None, action=AuditAction.CLAIM_REFUSED, ip=ip, detail=f"{clean_email} blocks automatic keys")
        return ClaimResult(ClaimStatus.NOT_ALLOWED, email=clean_email)
    # Known and unknown addresses meet the same per-IP account limit check, so the answer does
    # not reveal which addresses have accounts; only new accounts count against it.
    if peek(limits["accounts_ip"], _ip(ip) or "unknown") >= limits["accounts_ip"].count:
        audit_record(team=None, action=AuditAction.CLAIM_REFUSED, ip=ip, detail="new accounts per IP per day")
        return ClaimResult(ClaimStatus.TOO_MANY, email=clean_email)
    if not hit(limits["emails_address"], clean_email).allowed:
        audit_record(
            team=None, action=AuditAction.CLAIM_REFUSED, ip=ip, detail=f"claim emails per day to {clean_email}"
        )
        return ClaimResult(ClaimStatus.TOO_MANY, email=clean_email)
    if not hit(limits["global"], "all").allowed:
        audit_record(team=None, action=AuditAction.CLAIM_REFUSED, ip=ip, detail="global claim cap reached")
        return ClaimResult(ClaimStatus.TOO_MANY, email=clean_email)

    try:
        with transaction.atomic():
            return _claim_store(email=clean_email, secret=secret, ip=ip, user_agent=user_agent, limits=limits)
    except IntegrityError:
        # Two scripts raced to claim the same key (or address): answer as the winner left it.
        existing = ApiKey.objects.select_related("team", "user").filter(key_hash=key_hash(secret)).first()
        if existing is not None:
            return _claim_repeated(existing, clean_email, ip)
        raise


def _claim_repeated(existing: ApiKey, email: str, ip: str | None) -> ClaimResult:
    """The key is already known: `success` for the same address, refused (and no email) otherwise."""
    if existing.claim_email == email and existing.is_usable():
        audit_record(team=existing.team, action=AuditAction.CLAIM_REPEATED, user=existing.user, api_key=existing, ip=ip)
        return ClaimResult(ClaimStatus.SUCCESS, email=email)
    audit_record(
        team=existing.team,
        action=AuditAction.CLAIM_REFUSED,
        user=existing.user,
        api_key=existing,
        ip=ip,
        detail="the key was claimed again for another address (or is revoked)",
    )
    return ClaimResult(ClaimStatus.NOT_ALLOWED, email=email)


def _claim_store(*, email: str, secret: str, ip: str | None, user_agent: str, limits: dict[str, Limit]) -> ClaimResult:
    user = User.objects.filter(email__iexact=email).first()
    if user is None:
        if not hit(limits["accounts_ip"], _ip(ip) or "unknown").allowed:
            audit_record(team=None, action=AuditAction.CLAIM_REFUSED, ip=ip, detail="new accounts per IP per day")
            return ClaimResult(ClaimStatus.TOO_MANY, email=email)
        user = user_create(email=email)  # no password: a dormant account until confirmed
    if not user.is_active:
        return ClaimResult(ClaimStatus.NOT_ALLOWED, email=email)
    team = personal_team_ensure(user=user)
    unconfirmed = ApiKey.objects.filter(
        user=user,
        confirmed_at=None,
        revoked_at=None,
        created_at__gt=timezone.now() - timedelta(days=settings.KEYCHEST_CLAIM_MAX_AGE_DAYS),
    ).count()
    if unconfirmed >= settings.KEYCHEST_CLAIM_UNCONFIRMED_KEYS_PER_USER:
        audit_record(team=team, action=AuditAction.CLAIM_REFUSED, user=user, ip=ip, detail="too many unconfirmed keys")
        return ClaimResult(ClaimStatus.TOO_MANY, email=email)
    api_key = ApiKey.objects.create(
        team=team,
        user=user,
        name="Claimed by a script",
        key_hash=key_hash(secret),
        display_prefix=key_display_prefix(secret),
        scopes=scopes_clean([Scope.READ, Scope.ENROL]),
        source=KeySource.CLAIM,
        claim_email=email,
        created_ip=_ip(ip),
    )
    kind = ClaimKind.NEW_ACCOUNT if _account_is_dormant(user) else ClaimKind.NEW_KEY
    claim = Claim.objects.create(
        team=team, user=user, api_key=api_key, email=email, kind=kind, requested_ip=_ip(ip), user_agent=user_agent[:200]
    )
    audit_record(team=team, action=AuditAction.CLAIM_REQUESTED, user=user, api_key=api_key, ip=ip, detail=kind)
    transaction.on_commit(lambda: claim_email_send(claim_id=claim.pk))
    return ClaimResult(ClaimStatus.CREATED, email=email, api_key=secret)


def claim_token(claim: Claim) -> str:
    return signing.dumps(str(claim.uuid), salt=CLAIM_SALT)


def claim_from_token(token: str) -> Claim | None:
    """The claim a link names, or None when the link is forged or older than the claim window."""
    try:
        public_id = signing.loads(token, salt=CLAIM_SALT, max_age=settings.KEYCHEST_CLAIM_MAX_AGE_DAYS * DAY)
    except signing.BadSignature:
        return None
    return Claim.objects.select_related("user", "team", "api_key").filter(uuid=public_id).first()


def claim_links(claim: Claim) -> dict[str, str]:
    token = claim_token(claim)
    return {
        action: settings.SITE_URL + reverse("api_claim_decide", args=[token, action])
        for action in ("confirm", "revoke", "block")
    }


def claim_email_send(*, claim_id: int) -> None:
    """Send the confirmation email; failures are audited (the script's key simply stays unconfirmed)."""
    claim = Claim.objects.select_related("user", "team", "api_key").get(pk=claim_id)
    try:
        emails.claim(claim, claim_links(claim), pending_items(claim.api_key) if claim.api_key else [])
    except Exception as error:  # noqa: BLE001 - any SMTP failure is audited, never shown to the script
        log.warning("claim email to %s failed: %s", claim.email, error)
        audit_record(
            team=claim.team,
            action=AuditAction.CLAIM_EMAIL_FAILED,
            user=claim.user,
            api_key=claim.api_key,
            detail=type(error).__name__,
        )
        return
    audit_record(
        team=claim.team, action=AuditAction.CLAIM_EMAIL_SENT, user=claim.user, api_key=claim.api_key, detail=claim.email
    )


def pending_items(api_key: ApiKey) -> list[PendingEnrolment]:
    return list(PendingEnrolment.objects.filter(api_key=api_key).order_by("created_at", "id"))


def _lock_pending(claim: Claim) -> Claim:
    locked = Claim.objects.select_for_update(of=("self",)).select_related("user", "team", "api_key").get(pk=claim.pk)
    if not locked.is_pending():
        raise ValidationError("This request was already answered or has expired.")
    return locked


def claim_confirm(*, claim: Claim, ip: str | None, password: str | None = None) -> Claim:
    """The address owner confirms: the key works fully, held items become watched items."""
    from allauth.account.models import EmailAddress
    from django.contrib.auth.password_validation import validate_password

    with transaction.atomic():
        locked = _lock_pending(claim)
        user = locked.user
        if locked.kind == ClaimKind.NEW_ACCOUNT:
            if password:
                validate_password(password, user)
                user.set_password(password)
                user.save(update_fields=["password"])
            address, _ = EmailAddress.objects.get_or_create(user=user, email=locked.email, defaults={"primary": True})
            if not address.verified:
                address.verified = True
                address.save(update_fields=["verified"])
        now = timezone.now()
        locked.state = ClaimState.CONFIRMED
        locked.decided_at = now
        locked.save(update_fields=["state", "decided_at"])
        if locked.api_key is not None:
            ApiKey.objects.filter(pk=locked.api_key.pk).update(confirmed_at=now)
            locked.api_key.confirmed_at = now
            auth_epoch_bump()  # the key may now do more: processes must see it confirmed
        audit_record(team=locked.team, action=AuditAction.CLAIM_CONFIRMED, user=user, api_key=locked.api_key, ip=ip)
        if locked.api_key is not None:
            enrolments_release(api_key=locked.api_key, ip=ip)
    return locked


def claim_revoke(*, claim: Claim, ip: str | None) -> Claim:
    """The address owner refuses this one key; held items are dropped."""
    with transaction.atomic():
        locked = _lock_pending(claim)
        _claim_close(locked, ClaimState.REVOKED)
        audit_record(
            team=locked.team, action=AuditAction.CLAIM_REVOKED, user=locked.user, api_key=locked.api_key, ip=ip
        )
    return locked


def claim_block(*, claim: Claim, ip: str | None) -> Claim:
    """Refuse this key and every future automatic key for the address."""
    with transaction.atomic():
        locked = _lock_pending(claim)
        ClaimBlock.objects.get_or_create(email=locked.email, defaults={"created_ip": _ip(ip)})
        for other in Claim.objects.select_for_update().filter(user=locked.user, state=ClaimState.PENDING):
            _claim_close(other, ClaimState.BLOCKED)
        _claim_close(locked, ClaimState.BLOCKED)
        audit_record(
            team=locked.team,
            action=AuditAction.CLAIM_BLOCKED,
            user=locked.user,
            api_key=locked.api_key,
            ip=ip,
            detail=locked.email,
        )
    return locked


def claim_unblock(*, user: User, ip: str | None) -> None:
    """Allow automatic keys again for the user's own address (from the dashboard)."""
    with transaction.atomic():
        deleted, _ = ClaimBlock.objects.filter(email__iexact=user.email).delete()
        if deleted:
            audit_record(
                team=personal_team_ensure(user=user),
                action=AuditAction.CLAIM_UNBLOCKED,
                user=user,
                ip=ip,
                detail=user.email,
            )


def _claim_close(claim: Claim, state: str) -> None:
    now = timezone.now()
    claim.state = state
    claim.decided_at = now
    claim.save(update_fields=["state", "decided_at"])
    if claim.api_key_id is not None:
        if ApiKey.objects.filter(pk=claim.api_key_id, revoked_at=None).update(revoked_at=now):
            auth_epoch_bump()
        PendingEnrolment.objects.filter(api_key_id=claim.api_key_id).delete()


def claims_expire(*, now: datetime | None = None) -> int:
    """Expire unconfirmed keys older than the window, drop what they held, and remove dormant
    accounts nobody ever confirmed (so an address cannot be squatted by a stranger's claim)."""
    now = now or timezone.now()
    cutoff = now - timedelta(days=settings.KEYCHEST_CLAIM_MAX_AGE_DAYS)
    expired = 0
    for claim in Claim.objects.select_related("user", "team", "api_key").filter(
        state=ClaimState.PENDING, created_at__lte=cutoff
    ):
        with transaction.atomic():
            _claim_close(claim, ClaimState.EXPIRED)
            audit_record(team=claim.team, action=AuditAction.CLAIM_EXPIRED, user=claim.user, api_key=claim.api_key)
        expired += 1
    # Unconfirmed keys without a claim row (none today) expire the same way.
    stale = ApiKey.objects.filter(confirmed_at=None, revoked_at=None, created_at__lte=cutoff)
    for key_id in stale.values_list("pk", flat=True):
        with transaction.atomic():
            ApiKey.objects.filter(pk=key_id).update(revoked_at=now)
            auth_epoch_bump()
            PendingEnrolment.objects.filter(api_key_id=key_id).delete()
    dormant = (
        User.objects.filter(api_claims__kind=ClaimKind.NEW_ACCOUNT, last_login=None, api_claims__created_at__lte=cutoff)
        .exclude(api_claims__state__in=[ClaimState.PENDING, ClaimState.CONFIRMED])
        .distinct()
    )
    for user in dormant:
        if _account_is_dormant(user) and not user.api_keys.filter(confirmed_at__isnull=False).exists():
            log.info("removing dormant claimed account %s", user.pk)
            with transaction.atomic():
                teams = list(Team.objects.filter(is_personal=True, memberships__user=user))
                user.delete()
                # The personal team made with the account goes too, unless someone joined it.
                Team.objects.filter(pk__in=[t.pk for t in teams], memberships=None).delete()
    return expired
