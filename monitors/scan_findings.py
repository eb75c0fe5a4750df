"""What a scan concludes beyond one address: changes over time (timeline, events), checks against
the certificate store (renewed-not-deployed, rate limits) and the opening, refreshing and resolving
of findings. Pure functions return what to write; `findings_apply` writes a plan inside the
storing transaction of monitors/scan_storing.py.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from certificates.services import RATE_LIMIT_DUPLICATE_CERTIFICATES
from events.models import EventKind
from events.services import NewEvent
from kcproto import checks, netguard
from kcproto.checks import DOWN_CODES, FindingSpec
from kcproto.issuance import lets_encrypt_issued
from kcproto.x509 import ParsedCertificate
from keychest.sqlrows import update_rows
from monitors.models import Finding, ScanResult, Server, TimelineEntry
from monitors.scan_pass import ScanPass


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


@dataclass(frozen=True)
class Changes:
    """What changed on one address: its timeline entries, events and findings."""

    specs: list[FindingSpec] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)


def change_specs(server: Server, previous: ScanResult | None, row: ScanResult, now: datetime) -> Changes:
    """Timeline entries, events and findings for what changed on one address."""
    address = row.address
    if previous is None:
        what = f"new certificate {row.leaf_sha256[:12]}" if row.leaf_sha256 else f"error {row.error_code}"
        added = f"{address} first seen: {what}"
        return Changes(timeline=[timeline_entry(server, address, "address_added", added, now, sha256=row.leaf_sha256)])
    if row.leaf_sha256 and previous.leaf_sha256 and row.leaf_sha256 != previous.leaf_sha256:
        return _certificate_changed(server, previous, row, now)
    if row.error_code and not previous.error_code:
        kind, summary = "error", f"{address}: {row.error_code} ({row.error_message})"
    elif previous.error_code and not row.error_code:
        kind, summary = "recovered", f"{address} serves {row.leaf_sha256[:12]} again"
    else:
        kind, summary = "changed", f"{address}: TLS {row.tls_version or row.error_code} changed"
    return Changes(timeline=[timeline_entry(server, address, kind, summary, now)])


def _certificate_changed(server: Server, previous: ScanResult, row: ScanResult, now: datetime) -> Changes:
    address = row.address
    details = {"old": previous.leaf_sha256, "new": row.leaf_sha256}
    summary = f"New certificate {row.leaf_sha256[:12]} on {address} (was {previous.leaf_sha256[:12]})"
    timeline = [timeline_entry(server, address, "certificate_changed", summary, now, **details)]
    message = f"New certificate on {address}, valid until {row.not_after:%Y-%m-%d}"
    specs = [FindingSpec("certificate_changed", message, address, details)]
    dedup = f"scan:{server.uuid}:{address}:cert:{row.leaf_sha256}"
    events = [
        scan_event(server, EventKind.CERTIFICATE_CHANGED, dedup, server.label, "info", address=address, **details)
    ]
    if previous.issuer != row.issuer:
        issuers = {"old_issuer": previous.issuer, "new_issuer": row.issuer}
        changed = f"Issuer changed on {address}: {row.issuer}"
        timeline.append(timeline_entry(server, address, "issuer_changed", changed, now, **issuers))
        message = f"Issuer changed from {previous.issuer} to {row.issuer}"[:500]
        specs.append(FindingSpec("issuer_changed", message, address, issuers))
        dedup = f"scan:{server.uuid}:{address}:issuer:{row.leaf_sha256}"
        events.append(
            scan_event(server, EventKind.ISSUER_CHANGED, dedup, server.label, "warning", address=address, **issuers)
        )
    return Changes(specs, timeline, events)


def store_checks(
    server: Server, served: list[tuple[str, ParsedCertificate]], now: datetime, run: ScanPass
) -> list[FindingSpec]:
    """Checks against the certificate store: renewed-not-deployed, rate-limit risk."""
    if not served or netguard.parse_ip_literal(server.host) is not None:
        return []
    specs = [spec for address, leaf in served if (spec := _newer_not_deployed(server, address, leaf, run))]
    rate_limit = _rate_limit_spec(server, served, run)
    return specs + ([rate_limit] if rate_limit else [])


def _newer_not_deployed(server: Server, address: str, leaf: ParsedCertificate, run: ScanPass) -> FindingSpec | None:
    newest = run.newest_for(server.host, leaf.key_type)
    if newest is None or newest.not_before <= leaf.not_before or newest.issuance_key == leaf.issuance_key:
        return None
    return FindingSpec(
        "newer_certificate_not_deployed",
        f"{address} serves a certificate from {leaf.not_before:%Y-%m-%d}; a newer one from "
        f"{newest.not_before:%Y-%m-%d} ({newest.sha256[:12]}) is not deployed",
        address,
        {"served": leaf.sha256, "newer": newest.sha256},
    )


def _rate_limit_spec(server: Server, served: list[tuple[str, ParsedCertificate]], run: ScanPass) -> FindingSpec | None:
    """Let's Encrypt's weekly limits: only its certificates count, each served name set once."""
    usage = run.usage_for(server.host)
    spec = checks.rate_limit_check(usage.registered_domain, usage.issued, usage.limit)
    # The store is asked for duplicates (once per registered domain and pass) only when a Let's
    # Encrypt certificate is served.
    served_sets = {frozenset(leaf.all_names) for _, leaf in served if lets_encrypt_issued(leaf.issuer)}
    notes: list[str] = []
    if served_sets and usage.registered_domain:
        duplicates = run.duplicates_for(usage.registered_domain)
        for names in served_sets:
            issued = duplicates.get(names, 0)
            note = checks.duplicate_limit_message(list(names), issued, RATE_LIMIT_DUPLICATE_CERTIFICATES)
            if note:
                notes.append(note)
    if not notes:
        return spec
    details = {**(spec.details if spec else {}), "duplicates": notes}
    message = "; ".join(([spec.message] if spec else []) + notes)
    return checks.FindingSpec("rate_limit_risk", message, "", details)


SPECIFIC_EVENTS = {
    "ips_disagree": EventKind.IPS_DISAGREE,
    "newer_certificate_not_deployed": EventKind.NEWER_CERTIFICATE_NOT_DEPLOYED,
}


@dataclass(frozen=True)
class FindingsPlan:
    """The findings writes of one pass: what opens, what is seen again, what changed, what resolves."""

    create: list[Finding] = field(default_factory=list)
    seen: list[int] = field(default_factory=list)  # open findings seen again: only last_seen moves
    changed: list[tuple[int, str, str, dict[str, Any]]] = field(
        default_factory=list
    )  # (pk, message, severity, details)
    resolved: list[int] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)


def findings_plan(
    servers: Sequence[Server],
    specs_by_server: dict[int, list[FindingSpec]],
    open_findings: dict[tuple[int, str, str], Finding],
    keep_address_findings: set[int],
    now: datetime,
) -> FindingsPlan:
    """Open new findings, refresh those still seen, resolve those gone; events for each flip."""
    by_id = {s.pk: s for s in servers}
    plan = FindingsPlan()
    seen_keys: set[tuple[int, str, str]] = set()
    for server_id, specs in specs_by_server.items():
        for spec in specs:
            key = (server_id, spec.code, spec.address)
            if key in seen_keys:
                continue
            seen_keys.add(key)
            existing = open_findings.get(key)
            if existing is None:
                finding, events = _opened(by_id[server_id], spec, now)
                plan.create.append(finding)
                plan.events.extend(events)
                continue
            plan.seen.append(existing.pk)
            message = spec.message[:500]
            if (existing.message, existing.severity, existing.details) != (message, spec.severity, spec.details):
                plan.changed.append((existing.pk, message, spec.severity, spec.details))
    for key, finding in open_findings.items():
        server_id, _code, address = key
        if key in seen_keys or server_id not in specs_by_server:
            continue
        if address and server_id in keep_address_findings:
            continue  # DNS failed: we could not look at the addresses, so we know nothing new
        plan.resolved.append(finding.pk)
        plan.events.extend(_resolved_events(by_id[server_id], finding))
    return plan


def _opened(server: Server, spec: FindingSpec, now: datetime) -> tuple[Finding, list[NewEvent]]:
    """A new finding and its events (opened; the code's own kind; down)."""
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
    payload = {"code": spec.code, "address": spec.address, "message": finding.message, "finding": str(finding.uuid)}
    kinds = [(EventKind.FINDING_OPENED, "opened")]
    if spec.code in SPECIFIC_EVENTS:
        kinds.append((SPECIFIC_EVENTS[spec.code], spec.code))
    if spec.code in DOWN_CODES:
        kinds.append((EventKind.SERVER_DOWN, "down"))
    events = [
        scan_event(server, kind, f"finding:{finding.uuid}:{suffix}", server.label, spec.severity, **payload)
        for kind, suffix in kinds
    ]
    return finding, events


def _resolved_events(server: Server, finding: Finding) -> list[NewEvent]:
    payload = {
        "code": finding.code,
        "address": finding.address,
        "message": finding.message,
        "finding": str(finding.uuid),
    }
    kinds = [(EventKind.FINDING_RESOLVED, "resolved")]
    if finding.code in DOWN_CODES:
        kinds.append((EventKind.SERVER_RECOVERED, "recovered"))
    return [
        scan_event(server, kind, f"finding:{finding.uuid}:{suffix}", server.label, "info", **payload)
        for kind, suffix in kinds
    ]


def findings_apply(plan: FindingsPlan, now: datetime) -> None:
    """Write a findings plan: set-based statements, only the changed text rewritten."""
    if plan.resolved:
        Finding.objects.filter(pk__in=plan.resolved).update(resolved_at=now)
    if plan.seen:
        Finding.objects.filter(pk__in=plan.seen).update(last_seen=now)
    update_rows(Finding, ["message", "severity", "details"], plan.changed)
    Finding.objects.bulk_create(plan.create, batch_size=500)
