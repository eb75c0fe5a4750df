"""CSV exports and the ICS calendar of renewal dates.

Everything in them may come from a certificate or a remote server, so it is escaped: CSV cells
that a spreadsheet would run as a formula (starting with = + - @ tab or CR) get a leading
apostrophe, and ICS text is escaped and stripped of control characters per RFC 5545.
"""

from __future__ import annotations

import csv
import io
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db import IntegrityError, transaction
from django.urls import reverse

from api.models import CalendarFeed, UploadedCertificate
from api.selectors import certificate_sources, team_certificates
from keychest.accounts.models import Team, User
from monitors.models import ScanResult, Server

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def csv_cell(value: object) -> str:
    """One CSV cell as text, defused against formula injection."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    text = str(value)
    if text.startswith(FORMULA_STARTS):
        return "'" + text
    return text


def csv_render(header: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(header)
    for row in rows:
        writer.writerow([csv_cell(v) for v in row])
    return out.getvalue()


def ics_text(value: object) -> str:
    """An ICS TEXT value (RFC 5545 §3.3.11): control characters dropped, \\ ; , and newlines escaped."""
    text = str(value or "").replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL.sub("", text)
    return text.replace("\\", "\\\\").replace(";", "\\;").replace(",", "\\,").replace("\n", "\\n")


def ics_fold(line: str) -> str:
    """Fold a content line at 75 octets, never inside a UTF-8 sequence."""
    out: list[str] = []
    current = ""
    size = 0
    limit = 75
    for char in line:
        width = len(char.encode())
        if size + width > limit:
            out.append(current)
            current, size, limit = " ", 1, 75
        current += char
        size += width
    out.append(current)
    return "\r\n".join(out)


@dataclass(frozen=True)
class CalendarEvent:
    """One all-day entry: a certificate's renewal date (or its expiry)."""

    uid: str
    day: date
    summary: str
    description: str
    url: str = ""


def ics_render(events: Iterable[CalendarEvent], *, name: str, now: datetime) -> str:
    stamp = now.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")
    lines = [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        "PRODID:-//KeyChest//Renewal calendar//EN",
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
        f"X-WR-CALNAME:{ics_text(name)}",
        "REFRESH-INTERVAL;VALUE=DURATION:PT6H",
        "X-PUBLISHED-TTL:PT6H",
    ]
    for event in events:
        end = date.fromordinal(event.day.toordinal() + 1)
        lines += [
            "BEGIN:VEVENT",
            f"UID:{ics_text(event.uid)}",
            f"DTSTAMP:{stamp}",
            f"DTSTART;VALUE=DATE:{event.day:%Y%m%d}",
            f"DTEND;VALUE=DATE:{end:%Y%m%d}",
            f"SUMMARY:{ics_text(event.summary)}",
            f"DESCRIPTION:{ics_text(event.description)}",
            "TRANSP:TRANSPARENT",
        ]
        if event.url:
            lines.append(f"URL:{ics_text(event.url)}")
        lines.append("END:VEVENT")
    lines.append("END:VCALENDAR")
    return "\r\n".join(ics_fold(line) for line in lines) + "\r\n"


# --- the secret calendar address ----------------------------------------------------------------
def calendar_feed_for(user: User) -> CalendarFeed:
    feed = CalendarFeed.objects.filter(user=user).first()
    if feed is not None:
        return feed
    try:
        with transaction.atomic():
            return CalendarFeed.objects.create(user=user, token=secrets.token_urlsafe(32))
    except IntegrityError:
        return CalendarFeed.objects.get(user=user)


def calendar_feed_rotate(*, user: User) -> CalendarFeed:
    """A new secret address; the old one stops working at once."""
    feed = calendar_feed_for(user)
    feed.token = secrets.token_urlsafe(32)
    feed.save(update_fields=["token"])
    return feed


def calendar_feed_url(user: User) -> str:
    return settings.SITE_URL + reverse("api_calendar_feed", args=[calendar_feed_for(user).token])


# --- what goes into the exports -------------------------------------------------------------------
SERVER_COLUMNS = [
    "host",
    "port",
    "protocol",
    "paused",
    "tags",
    "address",
    "certificate_sha256",
    "subject",
    "issuer",
    "not_before",
    "not_after",
    "renewal_at",
    "error",
    "last_scan",
]


def servers_csv(team: Team) -> str:
    """One row per watched server and address (a server not scanned yet has one empty row)."""

    servers = list(Server.objects.for_team(team).filter(removed_at=None).order_by("host", "port", "id"))
    results: dict[int, list[ScanResult]] = {}
    for result in ScanResult.objects.filter(team=team, current=True, server__removed_at=None).order_by("address", "id"):
        results.setdefault(result.server_id, []).append(result)
    rows: list[list[object]] = []
    for server in servers:
        base = [server.host, server.port, server.protocol, server.paused, " ".join(server.tags)]
        for result in results.get(server.pk) or [None]:  # type: ignore[list-item]
            if result is None:
                rows.append([*base, "", "", "", "", None, None, None, "", server.last_scan_at])
                continue
            due, _overdue = server.thresholds()
            rows.append(
                [
                    *base,
                    result.address,
                    result.leaf_sha256,
                    result.subject,
                    result.issuer,
                    result.not_before,
                    result.not_after,
                    result.renewal_at(due=due),
                    result.error_code,
                    result.last_seen,
                ]
            )
    return csv_render(SERVER_COLUMNS, rows)


CERTIFICATE_COLUMNS = [
    "sha256",
    "subject",
    "issuer",
    "names",
    "not_before",
    "not_after",
    "renewal_at",
    "key",
    "sources",
]


def certificates_csv(team: Team) -> str:
    """The team's certificates: those its servers present and those it uploaded."""
    rows = []
    for cert in team_certificates(team).prefetch_related("names").order_by("not_after", "id"):
        rows.append(
            [
                cert.sha256,
                cert.subject,
                cert.issuer,
                " ".join(sorted(n.name for n in cert.names.all())),
                cert.not_before,
                cert.not_after,
                cert.renewal_at(),
                f"{cert.key_type} {cert.key_size}".strip(),
                " ".join(certificate_sources(cert)),
            ]
        )
    return csv_render(CERTIFICATE_COLUMNS, rows)


def calendar_events(teams: Sequence[Team], *, now: datetime) -> list[CalendarEvent]:
    """Renewal dates of every certificate the teams' servers present, one entry per server and
    certificate (several addresses serving it make one entry), for certificates not yet expired."""

    results = (
        ScanResult.objects.filter(
            team__in=teams, current=True, server__removed_at=None, not_after__gt=now - timedelta(days=1)
        )
        .exclude(leaf_sha256="")
        .select_related("server", "team")
        .order_by("not_after", "id")
    )
    seen: set[tuple[int, str]] = set()
    events = []
    for result in results:
        key = (result.server_id, result.leaf_sha256)
        if key in seen:
            continue
        seen.add(key)
        due, _ = result.server.thresholds()
        renewal = result.renewal_at(due=due)
        if renewal is None or result.not_after is None:
            continue
        label = result.server.label
        events.append(
            CalendarEvent(
                uid=f"{result.server.uuid}-{result.leaf_sha256[:16]}@keychest",
                day=renewal.date(),
                summary=f"Renew the certificate of {label}",
                description=(
                    f"Team: {result.team.name}\nServer: {label}\nExpires: {result.not_after:%Y-%m-%d %H:%M} UTC\n"
                    f"Issuer: {result.issuer}\nSHA-256: {result.leaf_sha256}"
                ),
                url=settings.SITE_URL + "/dashboard/",
            )
        )
    # Uploaded certificates (deploy hooks) that no watched server presents yet get an entry too.

    presented = {sha for _server, sha in seen}
    uploads = (
        UploadedCertificate.objects.filter(team__in=teams, certificate__not_after__gt=now - timedelta(days=1))
        .select_related("certificate", "team")
        .order_by("certificate__not_after", "id")
    )
    for upload in uploads:
        cert = upload.certificate
        if cert.sha256 in presented:
            continue
        events.append(
            CalendarEvent(
                uid=f"upload-{upload.uuid}@keychest",
                day=cert.renewal_at().date(),
                summary=f"Renew the uploaded certificate {cert.subject or cert.sha256[:16]}",
                description=(
                    f"Team: {upload.team.name}\nExpires: {cert.not_after:%Y-%m-%d %H:%M} UTC\n"
                    f"Issuer: {cert.issuer}\nSHA-256: {cert.sha256}"
                ),
                url=settings.SITE_URL + "/dashboard/",
            )
        )
    return events
