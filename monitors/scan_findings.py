"""What a scan concludes beyond one address: changes over time (timeline, events), checks against
the certificate store (renewed-not-deployed, rate limits) and the opening, refreshing and resolving
of findings. Split from monitors/scanning.py, which calls these inside its storing transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from events.models import EventKind
from events.services import NewEvent
from kcproto import checks, netguard
from kcproto.checks import DOWN_CODES, FindingSpec
from kcproto.issuance import lets_encrypt_issued
from kcproto.names import registered_domain
from kcproto.x509 import ParsedCertificate
from monitors.models import Finding, ScanResult, Server, TimelineEntry

if TYPE_CHECKING:
    from monitors.scanning import ScanPass

NEWER_CERTIFICATE_GRACE = timedelta(hours=1)


def dns_specs(server: Server) -> list[FindingSpec]:
    specs = [
        FindingSpec("target_refused", f"{address} is not a public address ({reason})", address)
        for address, reason in server.dns_refused
    ]
    failed = server.dns_error and server.dns_error != "no_answer"
    if failed and not server.dns_addresses and not server.dns_refused:
        specs.append(FindingSpec("dns_failure", f"{server.host} does not resolve ({server.dns_error})"))
    elif not server.dns_addresses and not server.dns_refused:
        specs.append(FindingSpec("no_addresses", f"{server.host} has no A or AAAA records"))
    return specs


def timeline_entry(
    server: Server, address: str, kind: str, summary: str, now: datetime, **details: Any
) -> TimelineEntry:
    return TimelineEntry(
        team_id=server.team_id,
        server=server,
        address=address,
        kind=kind,
        summary=summary[:500],
        details=details,
        at=now,
    )


def scan_event(server: Server, kind: str, dedup: str, subject: str, severity: str, **payload: Any) -> NewEvent:
    return NewEvent(
        team_id=server.team_id,
        kind=kind,
        subject=subject,
        dedup_key=dedup,
        severity=severity,
        payload={"server": str(server.uuid), "host": server.host, "port": server.port, **payload},
    )


def change_specs(
    server: Server,
    previous: ScanResult | None,
    row: ScanResult,
    timeline: list[TimelineEntry],
    events: list[NewEvent],
    now: datetime,
) -> list[FindingSpec]:
    """Timeline entries, events and findings for what changed on one address."""
    address = row.address
    if previous is None:
        what = f"new certificate {row.leaf_sha256[:12]}" if row.leaf_sha256 else f"error {row.error_code}"
        timeline.append(
            timeline_entry(
                server, address, "address_added", f"{address} first seen: {what}", now, sha256=row.leaf_sha256
            )
        )
        return []
    specs: list[FindingSpec] = []
    if row.leaf_sha256 and previous.leaf_sha256 and row.leaf_sha256 != previous.leaf_sha256:
        details = {"old": previous.leaf_sha256, "new": row.leaf_sha256}
        timeline.append(
            timeline_entry(
                server,
                address,
                "certificate_changed",
                f"New certificate {row.leaf_sha256[:12]} on {address} (was {previous.leaf_sha256[:12]})",
                now,
                **details,
            )
        )
        specs.append(
            FindingSpec(
                "certificate_changed",
                f"New certificate on {address}, valid until {row.not_after:%Y-%m-%d}",
                address,
                details,
            )
        )
        events.append(
            scan_event(
                server,
                EventKind.CERTIFICATE_CHANGED,
                f"scan:{server.uuid}:{address}:cert:{row.leaf_sha256}",
                server.label,
                "info",
                address=address,
                **details,
            )
        )
        if previous.issuer != row.issuer:
            issuers = {"old_issuer": previous.issuer, "new_issuer": row.issuer}
            timeline.append(
                timeline_entry(
                    server, address, "issuer_changed", f"Issuer changed on {address}: {row.issuer}", now, **issuers
                )
            )
            specs.append(
                FindingSpec(
                    "issuer_changed", f"Issuer changed from {previous.issuer} to {row.issuer}"[:500], address, issuers
                )
            )
            events.append(
                scan_event(
                    server,
                    EventKind.ISSUER_CHANGED,
                    f"scan:{server.uuid}:{address}:issuer:{row.leaf_sha256}",
                    server.label,
                    "warning",
                    address=address,
                    **issuers,
                )
            )
    elif row.error_code and not previous.error_code:
        timeline.append(
            timeline_entry(server, address, "error", f"{address}: {row.error_code} ({row.error_message})", now)
        )
    elif previous.error_code and not row.error_code:
        timeline.append(
            timeline_entry(server, address, "recovered", f"{address} serves {row.leaf_sha256[:12]} again", now)
        )
    else:
        timeline.append(
            timeline_entry(
                server, address, "changed", f"{address}: TLS {row.tls_version or row.error_code} changed", now
            )
        )
    return specs


@dataclass(frozen=True)
class Newest:
    sha256: str
    not_before: datetime
    issuance_key: str


def newest_certificates(hosts: list[str], now: datetime) -> dict[tuple[str, str], Newest]:
    """For every host: the newest valid leaf per key type naming it (or a covering wildcard).

    One query for the whole run; the same answer as `certificates_for(host, include_subdomains=False)`
    restricted to valid, non-CA certificates issued more than the grace period ago.
    """
    from certificates.models import CertificateName
    from kcproto.names import parent_wildcard

    names: dict[str, list[str]] = {}
    for host in set(hosts):
        if netguard.parse_ip_literal(host) is not None:
            continue
        names.setdefault(host, []).append(host)
        wildcard = parent_wildcard(host)
        if wildcard:
            names.setdefault(wildcard, []).append(host)
    if not names:
        return {}
    rows = CertificateName.objects.filter(
        name__in=list(names),
        not_before__lte=now - NEWER_CERTIFICATE_GRACE,
        not_after__gt=now,
        certificate__is_ca=False,
    ).values_list(
        "name",
        "certificate__sha256",
        "certificate__not_before",
        "certificate__issuance_key",
        "certificate__key_type",
    )
    newest: dict[tuple[str, str], Newest] = {}
    for name, sha256, not_before, issuance_key, key_type in rows:
        for host in names.get(name, []):
            current = newest.get((host, key_type))
            if current is None or not_before > current.not_before:
                newest[(host, key_type)] = Newest(sha256, not_before, issuance_key)
    return newest


def store_checks(
    server: Server, served: list[tuple[str, ParsedCertificate]], now: datetime, run: ScanPass
) -> list[FindingSpec]:
    """Checks against the certificate store: renewed-not-deployed, rate-limit risk."""
    if not served or netguard.parse_ip_literal(server.host) is not None:
        return []
    from certificates.services import (
        RATE_LIMIT_DUPLICATE_CERTIFICATES,
        RATE_LIMIT_WINDOW,
        duplicate_issuances,
        rate_limit_usage,
    )

    specs: list[FindingSpec] = []
    for address, leaf in served:
        newest = run.newest_for(server.host, leaf.key_type)
        if newest is not None and newest.not_before > leaf.not_before and newest.issuance_key != leaf.issuance_key:
            specs.append(
                FindingSpec(
                    "newer_certificate_not_deployed",
                    f"{address} serves a certificate from {leaf.not_before:%Y-%m-%d}; a newer one from "
                    f"{newest.not_before:%Y-%m-%d} ({newest.sha256[:12]}) is not deployed",
                    address,
                    {"served": leaf.sha256, "newer": newest.sha256},
                )
            )
    domain = registered_domain(server.host)
    if domain not in run.rate_limits:
        run.rate_limits[domain] = rate_limit_usage(name=server.host, now=now)
    usage = run.rate_limits[domain]
    spec = checks.rate_limit_check(usage.registered_domain, usage.issued, usage.limit)
    # The duplicate limit is Let's Encrypt's: only its certificates, each served name set once,
    # and the store asked (once per registered domain and pass) only when one is served.
    notes: list[str] = []
    served_sets = {frozenset(leaf.all_names) for _, leaf in served if lets_encrypt_issued(leaf.issuer)}
    if served_sets and usage.registered_domain:
        if domain not in run.duplicates:
            run.duplicates[domain] = duplicate_issuances(
                registered_domain=usage.registered_domain, since=now - RATE_LIMIT_WINDOW, lets_encrypt_only=True
            )
        for names in served_sets:
            issued = run.duplicates[domain].get(names, 0)
            note = checks.duplicate_limit_message(list(names), issued, RATE_LIMIT_DUPLICATE_CERTIFICATES)
            if note:
                notes.append(note)
    if notes:
        details = {**(spec.details if spec else {}), "duplicates": notes}
        message = "; ".join(([spec.message] if spec else []) + notes)
        spec = checks.FindingSpec("rate_limit_risk", message, "", details)
    if spec is not None:
        specs.append(spec)
    return specs


SPECIFIC_EVENTS = {
    "ips_disagree": EventKind.IPS_DISAGREE,
    "newer_certificate_not_deployed": EventKind.NEWER_CERTIFICATE_NOT_DEPLOYED,
}


def findings_apply(
    servers: Sequence[Server],
    specs_by_server: dict[int, list[FindingSpec]],
    open_findings: dict[tuple[int, str, str], Finding],
    keep_address_findings: set[int],
    now: datetime,
    events: list[NewEvent],
) -> None:
    """Open new findings, refresh those still seen, resolve those gone; events for each flip."""
    by_id = {s.pk: s for s in servers}
    to_create: list[Finding] = []
    to_refresh: list[Finding] = []
    seen_keys: set[tuple[int, str, str]] = set()
    for server_id, specs in specs_by_server.items():
        server = by_id[server_id]
        for spec in specs:
            key = (server_id, spec.code, spec.address)
            if key in seen_keys:
                continue
            seen_keys.add(key)
            existing = open_findings.get(key)
            if existing is not None:
                existing.last_seen = now
                existing.message = spec.message[:500]
                existing.severity = spec.severity
                existing.details = spec.details
                to_refresh.append(existing)
                continue
            finding = Finding(
                team_id=server.team_id,
                server=server,
                code=spec.code,
                severity=spec.severity,
                message=spec.message[:500],
                address=spec.address,
                details=spec.details,
                first_seen=now,
                last_seen=now,
            )
            to_create.append(finding)
            payload = {
                "code": spec.code,
                "address": spec.address,
                "message": finding.message,
                "finding": str(finding.uuid),
            }
            events.append(
                scan_event(
                    server,
                    EventKind.FINDING_OPENED,
                    f"finding:{finding.uuid}:opened",
                    server.label,
                    spec.severity,
                    **payload,
                )
            )
            specific = SPECIFIC_EVENTS.get(spec.code)
            if specific is not None:
                events.append(
                    scan_event(
                        server, specific, f"finding:{finding.uuid}:{spec.code}", server.label, spec.severity, **payload
                    )
                )
            if spec.code in DOWN_CODES:
                events.append(
                    scan_event(
                        server,
                        EventKind.SERVER_DOWN,
                        f"finding:{finding.uuid}:down",
                        server.label,
                        spec.severity,
                        **payload,
                    )
                )
    resolved: list[int] = []
    for key, finding in open_findings.items():
        server_id, code, address = key
        if key in seen_keys or server_id not in specs_by_server:
            continue
        if address and server_id in keep_address_findings:
            continue  # DNS failed: we could not look at the addresses, so we know nothing new
        resolved.append(finding.pk)
        server = by_id[server_id]
        payload = {"code": code, "address": address, "message": finding.message, "finding": str(finding.uuid)}
        events.append(
            scan_event(
                server, EventKind.FINDING_RESOLVED, f"finding:{finding.uuid}:resolved", server.label, "info", **payload
            )
        )
        if code in DOWN_CODES:
            events.append(
                scan_event(
                    server,
                    EventKind.SERVER_RECOVERED,
                    f"finding:{finding.uuid}:recovered",
                    server.label,
                    "info",
                    **payload,
                )
            )
    if resolved:
        Finding.objects.filter(pk__in=resolved).update(resolved_at=now)
    if to_refresh:
        Finding.objects.bulk_update(to_refresh, ["last_seen", "message", "severity", "details"], batch_size=500)
    Finding.objects.bulk_create(to_create, batch_size=500)


# --- scheduling ---------------------------------------------------------------------------------
