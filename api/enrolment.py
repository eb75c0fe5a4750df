"""Enrolling servers and certificates through the API, and holding what unconfirmed keys enrol.

A confirmed key enrols straight into the team (monitors' `server_enrol`, the certificate store).
An unconfirmed key's items wait in `PendingEnrolment`: nothing scans them and nothing emails
about them until the address owner confirms; then `enrolments_release` enrols them for real.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.db.models.functions import Length
from django.utils import timezone

from api.audit import audit_record
from api.models import ApiKey, AuditAction, EnrolmentKind, PendingEnrolment, UploadedCertificate
from certificates.models import Certificate, SourceKind
from certificates.services import certificate_store_der, upload_source_ref
from kcproto.x509 import MAX_CERTIFICATE_BYTES, ParsedCertificate, parse_certificate, pem_to_der_list
from keychest.accounts.models import Team, User
from monitors.models import Server
from monitors.services import AlreadyWatched, server_enrol


def server_enrol_for_key(*, api_key: ApiKey, host: str, port: int | None) -> tuple[Server, bool]:
    """Watch a server for the key's team; (server, created). Raises monitors' InvalidTarget."""
    try:
        return server_enrol(team=api_key.team, host=host, port=port, added_by=api_key.user), True
    except AlreadyWatched as exc:
        return exc.server, False


class SingleCertificateExpected(ValueError):
    """The upload held more than one certificate (the v1.0 status `single-cert-expected`)."""


class CertificateTooLarge(ValueError):
    """The upload is larger than MAX_CERTIFICATE_BYTES (the v1.0 status `too-large`)."""


def certificate_parse_one(text: str | bytes) -> ParsedCertificate:
    """Exactly one certificate, as PEM (or DER bytes), of at most MAX_CERTIFICATE_BYTES. Raises
    CertificateParseError, SingleCertificateExpected or CertificateTooLarge."""
    raw = text.encode() if isinstance(text, str) else text
    if len(raw) > MAX_CERTIFICATE_BYTES:
        raise CertificateTooLarge(f"a certificate may take at most {MAX_CERTIFICATE_BYTES} bytes")
    if b"-----BEGIN" in raw:
        ders = pem_to_der_list(raw)
        if len(ders) != 1:
            raise SingleCertificateExpected(f"{len(ders)} certificates given, one expected")
        raw = ders[0]
    return parse_certificate(raw)


@dataclass(frozen=True)
class Upload:
    certificate: Certificate
    created: bool


def certificate_upload(*, team: Team, der: bytes, user: User | None, api_key: ApiKey | None = None) -> Upload:
    """Store a certificate and record that `team` uploaded it; idempotent per team."""
    certificate = certificate_store_der(der=der, source=SourceKind.UPLOAD, source_ref=upload_source_ref(team.uuid))
    _row, created = UploadedCertificate.objects.get_or_create(
        team=team, certificate=certificate, defaults={"added_by": user, "api_key": api_key}
    )
    return Upload(certificate=certificate, created=created)


def enrolment_hold_server(
    *, api_key: ApiKey, host: str, port: int | None, ip: str | None
) -> tuple[PendingEnrolment, bool]:
    """Hold a server for an unconfirmed key; (row, created)."""
    return _hold(api_key, ip, kind=EnrolmentKind.SERVER, host=host, port=port, sha256="")


def enrolment_hold_certificate(
    *, api_key: ApiKey, der: bytes, sha256: str, not_after: datetime, ip: str | None
) -> tuple[PendingEnrolment, bool]:
    """Hold a certificate for an unconfirmed key; (row, created)."""
    return _hold(
        api_key, ip, kind=EnrolmentKind.CERTIFICATE, sha256=sha256, defaults={"der": der, "not_after": not_after}
    )


class HoldBudgetSpent(Exception):
    """The unconfirmed keys of this person already hold the most they may (v1.0 `too-many`)."""


def _budget_check(api_key: ApiKey, size: int) -> None:
    """Anonymous callers must not fill the database (security finding 5): what one person's
    unconfirmed keys hold together stays within KEYCHEST_UNCONFIRMED_MAX_ITEMS and _BYTES (one
    budget per person, so more keys hold no more). The person's row is locked, so concurrent
    holds cannot both pass the check."""
    User.objects.select_for_update().filter(pk=api_key.user_id).first()
    held = PendingEnrolment.objects.filter(api_key__user_id=api_key.user_id).aggregate(
        items=Count("id"), size=Sum(Length("der"))
    )
    if held["items"] + 1 > settings.KEYCHEST_UNCONFIRMED_MAX_ITEMS:
        raise HoldBudgetSpent(
            f"unconfirmed keys may hold {settings.KEYCHEST_UNCONFIRMED_MAX_ITEMS} items; confirm the key"
        )
    if (held["size"] or 0) + size > settings.KEYCHEST_UNCONFIRMED_MAX_BYTES:
        raise HoldBudgetSpent(
            f"unconfirmed keys may hold {settings.KEYCHEST_UNCONFIRMED_MAX_BYTES} bytes; confirm the key"
        )


def _hold(
    api_key: ApiKey, ip: str | None, *, defaults: dict[str, object] | None = None, **identity: object
) -> tuple[PendingEnrolment, bool]:
    """The key's held item with `identity` (its unique fields), created and audited if new.
    Raises HoldBudgetSpent when a new item would exceed the budget of unconfirmed keys."""
    der = (defaults or {}).get("der")
    try:
        with transaction.atomic():
            existing = PendingEnrolment.objects.filter(api_key=api_key, **identity).first()
            if existing is not None:
                return existing, False
            _budget_check(api_key, len(der) if isinstance(der, bytes) else 0)
            item = PendingEnrolment.objects.create(team=api_key.team, api_key=api_key, **identity, **(defaults or {}))
    except IntegrityError:
        return PendingEnrolment.objects.get(api_key=api_key, **identity), False
    audit_record(
        team=api_key.team,
        action=AuditAction.ENROLMENT_HELD,
        user=api_key.user,
        api_key=api_key,
        ip=ip,
        detail=str(item),
    )
    return item, True


def enrolments_release(*, api_key: ApiKey, ip: str | None) -> int:
    """Turn what an unconfirmed key held into ordinary watched items of its team (inside the
    confirmation's transaction)."""
    items = list(PendingEnrolment.objects.filter(api_key=api_key).order_by("created_at", "id"))
    for item in items:
        if item.kind == EnrolmentKind.SERVER:
            server, created = server_enrol_for_key(api_key=api_key, host=item.host, port=item.port)
            if created:
                # The id servers/add answered while the key was unconfirmed stays the server's id.
                Server.objects.filter(pk=server.pk).update(uuid=item.uuid)
        else:
            certificate_upload(team=api_key.team, der=bytes(item.der or b""), user=api_key.user, api_key=api_key)
        audit_record(
            team=api_key.team,
            action=AuditAction.ENROLMENT_RELEASED,
            user=api_key.user,
            api_key=api_key,
            ip=ip,
            detail=f"{item} (held since {timezone.localtime(item.created_at):%Y-%m-%d %H:%M})",
        )
    PendingEnrolment.objects.filter(pk__in=[i.pk for i in items]).delete()
    return len(items)
