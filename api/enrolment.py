"""Enrolling servers and certificates through the API, and holding what unconfirmed keys enrol.

A confirmed key enrols straight into the team (monitors' `server_enrol`, the certificate store).
An unconfirmed key's items wait in `PendingEnrolment`: nothing scans them and nothing emails
about them until the address owner confirms; then `enrolments_release` enrols them for real.
"""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from api.audit import audit_record
from api.models import ApiKey, AuditAction, EnrolmentKind, PendingEnrolment


def enrolment_hold_server(
    *, api_key: ApiKey, host: str, port: int | None, ip: str | None
) -> tuple[PendingEnrolment, bool]:
    """Hold a server for an unconfirmed key; (row, created)."""
    try:
        with transaction.atomic():
            item = PendingEnrolment.objects.create(
                team=api_key.team, api_key=api_key, kind=EnrolmentKind.SERVER, host=host, port=port, sha256=""
            )
    except IntegrityError:
        item = PendingEnrolment.objects.get(api_key=api_key, kind=EnrolmentKind.SERVER, host=host, port=port, sha256="")
        return item, False
    audit_record(
        team=api_key.team,
        action=AuditAction.ENROLMENT_HELD,
        user=api_key.user,
        api_key=api_key,
        ip=ip,
        detail=str(item),
    )
    return item, True


def enrolment_hold_certificate(
    *, api_key: ApiKey, der: bytes, sha256: str, not_after: object, ip: str | None
) -> tuple[PendingEnrolment, bool]:
    """Hold a certificate for an unconfirmed key; (row, created)."""
    try:
        with transaction.atomic():
            item = PendingEnrolment.objects.create(
                team=api_key.team,
                api_key=api_key,
                kind=EnrolmentKind.CERTIFICATE,
                host="",
                port=None,
                der=der,
                sha256=sha256,
                not_after=not_after,
            )
    except IntegrityError:
        item = PendingEnrolment.objects.get(api_key=api_key, kind=EnrolmentKind.CERTIFICATE, sha256=sha256)
        return item, False
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
            from api.enrol import server_enrol_for_key

            server_enrol_for_key(api_key=api_key, host=item.host, port=item.port)
        else:
            from api.enrol import certificate_enrol_for_key

            certificate_enrol_for_key(api_key=api_key, der=bytes(item.der or b""))
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
