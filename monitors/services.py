"""Writes about watched servers: enrol one or many, pause, resume, remove, scan now.

Every function takes keyword arguments and runs in one transaction. Scanning itself (which also
writes results and findings) lives in `monitors/scanning.py`.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from certificates.ari import renewal_info_refresh
from certificates.models import Certificate
from kcproto.targets import (
    PROTOCOL_PORT_DEFAULTS,
    InvalidTarget,
    non_public_reason,
    parse_port,
    parse_protocol,
    parse_target,
)
from keychest.sqlrows import insert_or_find
from monitors.models import DEFAULT_SCAN_INTERVAL, ScanResult, Server, SpotCheck, TeamCABundle, WatchedDomain
from monitors.scan_claims import scans_queue_after_commit

if TYPE_CHECKING:
    from keychest.accounts.models import Team, User

MIN_SCAN_INTERVAL = 300
MAX_TAGS = 20
MAX_BULK_LINES = 1000


class AlreadyWatched(Exception):
    """The team already watches this host, port and protocol (the existing server is attached)."""

    def __init__(self, server: Server) -> None:
        super().__init__(f"{server.label} is already watched")
        self.server = server


def _clean_tags(tags: list[str] | None) -> list[str]:
    out: list[str] = []
    for tag in tags or []:
        text = str(tag).strip()[:50]
        if text and text not in out:
            out.append(text)
    if len(out) > MAX_TAGS:
        raise InvalidTarget(f"at most {MAX_TAGS} tags")
    return out


def _fraction(value: float | None, name: str) -> float | None:
    if value is None:
        return None
    number = float(value)
    if not 0 < number < 1:
        raise InvalidTarget(f"{name} must be a fraction between 0 and 1")
    return number


class PrivateTarget(InvalidTarget):
    """A loopback, private or local-only target while this deployment scans only public ones."""


# What netguard's reasons mean to someone adding a server. Only these are refused at input:
# the ones people type (documentation and reserved ranges are left to the scanner's refusal).
_NON_PUBLIC_WORDS = {
    "loopback": "a loopback address (the machine KeyChest itself runs on)",
    "private": "an address inside a private network",
    "unique_local": "an address inside a private network",
    "cgnat": "a carrier-grade NAT address inside a provider's network",
    "link_local": "a link-local address that only exists on one network segment",
    "metadata": "a cloud metadata service address",
    "local_name": "a name that only exists inside a local network",
    "unspecified": "not an address of any machine",
}


def target_refusal(*, team: Team, host: str) -> str | None:
    """Plain words for a target the scanner will never reach from here, or None.

    Refused at input time (not as a "down" server later) unless private targets are allowed
    (KEYCHEST_ALLOW_PRIVATE_TARGETS) or the team already scans through an agent inside its
    network (a server or domain assigned to one; agents sit above this layer, so their own rows
    are reached only through these relations). The SaaS scanner refuses such targets anyway.
    """
    if settings.KEYCHEST_ALLOW_PRIVATE_TARGETS:
        return None
    reason = (non_public_reason(host) or "").removeprefix("embedded_")
    if reason not in _NON_PUBLIC_WORDS or _team_uses_agents(team):
        return None
    what = _NON_PUBLIC_WORDS[reason]
    return (
        f"{host} is {what}, so KeyChest cannot reach it from the internet. "
        "Enter the server's public name or address instead."
    )


def _team_uses_agents(team: Team) -> bool:
    active = {"agent__isnull": False, "agent__revoked_at": None}
    return (
        Server.objects.for_team(team).filter(removed_at=None, **active).exists()
        or WatchedDomain.objects.for_team(team).filter(removed_at=None, **active).exists()
    )


def domain_agent_id(*, team: Team, host: str) -> int | None:
    """The agent of the closest watched domain above `host` that is assigned to one: servers under
    it are scanned by that agent from the moment they are enrolled, never by the SaaS."""
    candidates = {host, *(host.split(".", i)[-1] for i in range(1, host.count(".") + 1))}
    found = (
        WatchedDomain.objects.for_team(team)
        .filter(removed_at=None, agent__isnull=False, domain__in=candidates)
        .values_list("domain", "agent_id")
    )
    by_length = sorted(found, key=lambda row: len(row[0]), reverse=True)
    return by_length[0][1] if by_length else None


def _enrol_target(host: str, port: int | str | None, protocol: str | None) -> tuple[str, int, str]:
    """(host, port, protocol) of an enrolment; an explicit `port` wins over one in `host`."""
    name, parsed_port = parse_target(host)
    if port not in (None, ""):
        parsed_port = parse_port(port)  # type: ignore[arg-type]
    if parsed_port is None:
        parsed_port = PROTOCOL_PORT_DEFAULTS.get((protocol or "tls").strip().lower(), 443)
    return name, parsed_port, parse_protocol(protocol, parsed_port)


def _pinned_address(pinned_ip: str | None) -> str | None:
    if not pinned_ip:
        return None
    try:
        return str(ipaddress.ip_address(str(pinned_ip).strip().strip("[]")))
    except ValueError:
        raise InvalidTarget(f"pinned IP {pinned_ip!r} is not an IP address") from None


def server_enrol(
    *,
    team: Team,
    host: str,
    port: int | str | None = None,
    protocol: str | None = None,
    pinned_ip: str | None = None,
    scan_interval: int | None = None,
    tags: list[str] | None = None,
    ca_bundle: TeamCABundle | None = None,
    due_fraction: float | None = None,
    overdue_fraction: float | None = None,
    added_by: User | None = None,
    scan_soon: bool = True,
) -> Server:
    """Watch `host[:port]` for `team`; its first scan is queued when the enrolment commits
    (`scan_soon=False`: left to beat's next pass, or to the caller).

    `host` may carry a port (`example.com:8443`); an explicit `port` wins. Without a port the
    protocol's usual port is used (443 for TLS). Raises InvalidTarget or AlreadyWatched.
    """
    name, parsed_port, proto = _enrol_target(host, port, protocol)
    refusal = target_refusal(team=team, host=name)
    if refusal is not None:
        raise PrivateTarget(refusal)
    # A pinned address is not checked here: pinning a name to an address inside the network is
    # how a server meant for a team agent is added before it is assigned to it.
    pinned = _pinned_address(pinned_ip)
    interval = DEFAULT_SCAN_INTERVAL if scan_interval is None else int(scan_interval)
    if interval < MIN_SCAN_INTERVAL:
        raise InvalidTarget(f"scan interval must be at least {MIN_SCAN_INTERVAL} seconds")
    if ca_bundle is not None and ca_bundle.team_id != team.pk:
        raise InvalidTarget("CA bundle of another team")
    server = Server(
        team=team,
        host=name,
        port=parsed_port,
        protocol=proto,
        pinned_ip=pinned,
        scan_interval=interval,
        tags=_clean_tags(tags),
        ca_bundle=ca_bundle,
        due_fraction=_fraction(due_fraction, "due_fraction"),
        overdue_fraction=_fraction(overdue_fraction, "overdue_fraction"),
        added_by=added_by,
        next_scan_at=timezone.now(),
    )

    def watched() -> QuerySet[Server]:  # built only when needed: the common path never reads it
        return Server.objects.for_team(team).filter(host=name, port=parsed_port, protocol=proto, removed_at=None)

    # One statement on PostgreSQL: insert unless the active-target constraint already holds
    # this target, else read the server that holds it (scripts enrol on every deploy, so both
    # run often). Inside a caller's transaction the statement runs under its own savepoint
    # (`execute_prepared`), as save() did, so an error does not poison that transaction.
    outcome = insert_or_find(
        server, name="kc_server_enrol", unique=("team", "host", "port", "protocol"), where='"removed_at" IS NULL'
    )
    if outcome is None:
        existing = watched().first()
        if existing is not None:
            raise AlreadyWatched(existing)
        try:
            with transaction.atomic():
                server.save()
        except IntegrityError:
            outcome = (False, None)  # a concurrent enrolment of the same target won the race
    if outcome is not None and not outcome[0]:
        raise AlreadyWatched(outcome[1] or watched().get())
    # Only a new row asks (enrolling again stays one statement). The first scan is queued on
    # commit, after this update; a server an agent scans is not queued (and not taken by a batch).
    agent_id = domain_agent_id(team=team, host=name)
    if agent_id is not None:
        Server.objects.filter(pk=server.pk).update(agent_id=agent_id)
        server.agent_id = agent_id
    elif scan_soon:
        scans_queue_after_commit([server.pk])
    return server


@dataclass
class BulkLineError:
    line_number: int
    line: str
    message: str


@dataclass
class BulkResult:
    """What a bulk paste did, line by line."""

    created: list[Server] = field(default_factory=list)
    existing: list[Server] = field(default_factory=list)
    errors: list[BulkLineError] = field(default_factory=list)


def servers_enrol_bulk(
    *,
    team: Team,
    text: str,
    protocol: str | None = None,
    tags: list[str] | None = None,
    added_by: User | None = None,
) -> BulkResult:
    """One `host[:port]` per line (blank lines and `#` comments skipped); errors are per line."""
    result = BulkResult()
    lines = text.splitlines()
    if len(lines) > MAX_BULK_LINES:
        result.errors.append(BulkLineError(MAX_BULK_LINES + 1, "", f"at most {MAX_BULK_LINES} lines at once"))
        lines = lines[:MAX_BULK_LINES]
    for number, raw in enumerate(lines, start=1):
        line = raw.split("#", 1)[0].strip().strip(",;")
        if not line:
            continue
        try:
            server = server_enrol(
                team=team, host=line, protocol=protocol, tags=tags, added_by=added_by, scan_soon=False
            )
        except InvalidTarget as exc:
            result.errors.append(BulkLineError(number, raw.strip()[:300], str(exc)))
        except AlreadyWatched as exc:
            result.existing.append(exc.server)
        else:
            result.created.append(server)
    scans_queue_after_commit([server.pk for server in result.created if server.agent_id is None])
    return result


def server_pause(*, server: Server) -> Server:
    server.paused = True
    server.save(update_fields=["paused"])
    return server


def server_resume(*, server: Server) -> Server:
    server.paused = False
    server.next_scan_at = timezone.now()
    server.save(update_fields=["paused", "next_scan_at"])
    return server


@transaction.atomic
def server_remove(*, server: Server) -> Server:
    """Stop watching: the row, its results and its timeline stay (history), open findings close."""
    now = timezone.now()
    server.removed_at = now
    server.paused = True
    server.save(update_fields=["removed_at", "paused"])
    server.findings.filter(resolved_at=None).update(resolved_at=now)
    server.results.filter(current=True).update(current=False)
    return server


def server_update(*, server: Server, **changes: Any) -> Server:
    """Change settings (interval, tags, thresholds, pinned IP, CA bundle); validated like enrol."""
    fields: list[str] = []
    if "scan_interval" in changes:
        interval = int(changes["scan_interval"])
        if interval < MIN_SCAN_INTERVAL:
            raise InvalidTarget(f"scan interval must be at least {MIN_SCAN_INTERVAL} seconds")
        server.scan_interval = interval
        fields.append("scan_interval")
    if "tags" in changes:
        server.tags = _clean_tags(changes["tags"])
        fields.append("tags")
    for name in ("due_fraction", "overdue_fraction"):
        if name in changes:
            setattr(server, name, _fraction(changes[name], name))
            fields.append(name)
    if "pinned_ip" in changes:
        value = changes["pinned_ip"]
        try:
            server.pinned_ip = str(ipaddress.ip_address(str(value).strip("[]"))) if value else None
        except ValueError:
            raise InvalidTarget(f"pinned IP {value!r} is not an IP address") from None
        fields.append("pinned_ip")
    if "ca_bundle" in changes:
        bundle = changes["ca_bundle"]
        if bundle is not None and bundle.team_id != server.team_id:
            raise InvalidTarget("CA bundle of another team")
        server.ca_bundle = bundle
        fields.append("ca_bundle")
    if fields:
        server.save(update_fields=fields)
    return server


def server_scan_soon(*, server: Server, delay: timedelta | None = None) -> Server:
    """Make the server due now (or after `delay`); the scheduler picks it up on its next pass."""
    server.next_scan_at = timezone.now() + (delay or timedelta(0))
    server.save(update_fields=["next_scan_at"])
    return server


def ca_bundle_create(*, team: Team, name: str, pem: str) -> TeamCABundle:
    """A team CA bundle; every PEM block must parse as a certificate."""
    from cryptography import x509

    try:
        certs = x509.load_pem_x509_certificates(pem.encode())
    except ValueError as exc:
        raise InvalidTarget(f"not a PEM certificate bundle ({exc})") from None
    if not certs:
        raise InvalidTarget("no certificate in the bundle")
    return TeamCABundle.objects.create(team=team, name=name.strip()[:100] or "CA bundle", pem=pem)


SPOTCHECK_RETENTION = timedelta(days=30)


def spotchecks_purge(*, older_than: timedelta = SPOTCHECK_RETENTION) -> int:
    """Forget public spot checks (and their shareable links) after the retention period."""

    deleted, _ = SpotCheck.objects.filter(created_at__lt=timezone.now() - older_than).delete()
    return deleted


def served_certificates_ari_refresh(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Read ARI (certificates/ari.py) for the leaf certificates watched servers serve now."""

    now = now or timezone.now()
    served = (
        ScanResult.objects.filter(current=True, server__removed_at=None).exclude(leaf_sha256="").values("leaf_sha256")
    )
    ids = list(
        Certificate.objects.filter(sha256__in=served, not_after__gt=now)
        .exclude(renewal_info__next_check_at__gt=now)
        .values_list("id", flat=True)[:limit]
    )
    return renewal_info_refresh(certificate_ids=ids, now=now, limit=limit)
