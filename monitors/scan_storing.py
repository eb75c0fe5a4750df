"""The storing phase of a scan: from what the network phase observed to the rows to write.

Judging is pure (each step returns the rows it wants written, nothing is filled in place);
`store_observed` then writes one pass in one transaction with set-based statements, and only
what changed: an unchanged address moves its `last_seen`, an unchanged finding its `last_seen`,
and servers their scan times (issue 19: `bulk_update`'s CASE WHEN per row and field cost more
than the handshakes).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from django.db import transaction

from certificates.services import StoreItem, certificates_store_bulk
from events.services import NewEvent, events_record_bulk
from kcproto import checks, netguard, tlsprobe
from kcproto.checks import FindingSpec
from kcproto.validation import Validation
from kcproto.x509 import ParsedCertificate
from keychest.sqlrows import update_rows
from monitors.models import Finding, ScanResult, Server, TimelineEntry
from monitors.scan_findings import (
    Changes,
    change_specs,
    dns_specs,
    findings_apply,
    findings_plan,
    store_checks,
    timeline_entry,
)
from monitors.scan_pass import ScanPass

logger = logging.getLogger(__name__)

JITTER = 0.15


@dataclass
class Observed:
    """The network view of one server in this scan."""

    resolution: netguard.Resolution | None = None
    probes: list[tlsprobe.Probe] = field(default_factory=list)
    resolved_now: bool = False
    legacy_probed: bool = False
    alternate_probed: bool = False


@dataclass(frozen=True)
class Checked:
    """One address after validation: the probe, its chain's validation, the second certificate's."""

    probe: tlsprobe.Probe
    validation: Validation | None
    alternate: Validation | None


@dataclass(frozen=True)
class Writes:
    """Rows one address, server or pass wants written."""

    new_results: list[ScanResult] = field(default_factory=list)
    retire: list[int] = field(default_factory=list)
    touch: list[int] = field(default_factory=list)
    timeline: list[TimelineEntry] = field(default_factory=list)
    events: list[NewEvent] = field(default_factory=list)
    specs: list[FindingSpec] = field(default_factory=list)


def merged(parts: Sequence[Writes]) -> Writes:
    return Writes(*([item for part in parts for item in getattr(part, f.name)] for f in dataclasses.fields(Writes)))


def _from_changes(changes: Changes, **rows: list[int] | list[ScanResult]) -> Writes:
    return Writes(timeline=changes.timeline, events=changes.events, specs=changes.specs, **rows)  # type: ignore[arg-type]


def failed_probe(server: Server, address: str, step: str, exc: Exception) -> tlsprobe.Probe:
    """KeyChest's own failure on one address, as that address's result (`scan_error`), logged."""
    logger.exception("scan of %s:%s at %s failed while %s", server.host, server.port, address, step, exc_info=exc)
    return tlsprobe.Probe(
        address=address,
        port=server.port,
        error_code="scan_error",
        error_message=f"KeyChest failed while {step} this address ({type(exc).__name__}); the error is logged",
    )


# The digest keeps OpenSSL's spelling of legacy versions, so rows stored before they were named
# "TLS 1.0"/"TLS 1.1" still match an unchanged server.
_DIGEST_NAMES = {name: openssl for openssl, name in tlsprobe.LEGACY_NAMES.items()}


def digest(probe: tlsprobe.Probe, chain: list[str]) -> str:
    legacy = sorted(_DIGEST_NAMES.get(v, v) for v in probe.legacy_versions)
    state = [probe.error_code, chain, probe.tls_version, probe.cipher, legacy]
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()


def result_row(
    server: Server,
    probe: tlsprobe.Probe,
    validation: Validation | None,
    state_digest: str,
    now: datetime,
    *,
    alternate: bool = False,
) -> ScanResult:
    leaf = validation.leaf if validation else None
    return ScanResult(
        team_id=server.team_id,
        server=server,
        address=probe.address,
        alternate=alternate,
        state_digest=state_digest,
        error_code=probe.error_code,
        error_message=probe.error_message[:500],
        leaf_sha256=leaf.sha256 if leaf else "",
        chain_sha256=[p.sha256 for p in validation.chain] if validation else [],
        subject=leaf.subject[:500] if leaf else "",
        issuer=leaf.issuer[:500] if leaf else "",
        issuer_key=leaf.issuer_key_id[:128] if leaf else "",
        names=list((leaf.names + leaf.ip_addresses)[:100]) if leaf else [],
        not_before=leaf.not_before if leaf else None,
        not_after=leaf.not_after if leaf else None,
        tls_version=probe.tls_version,
        cipher=probe.cipher[:100],
        legacy_tls=probe.legacy_versions,
        trusted=validation.trusted if validation else None,
        first_seen=now,
        last_seen=now,
    )


# --- validation ----------------------------------------------------------------------------------
def check_address(server: Server, probe: tlsprobe.Probe, run: ScanPass) -> Checked:
    """Validate what one address served (both certificates); a failure here is that address's alone."""
    source = f"{server.host}:{server.port}"
    try:
        validation = alternate = None
        if probe.ok and probe.chain_der:
            validation = run.validate(probe.chain_der, server.host, run.store_for(server))
            run.remember(validation, source)
        if probe.ok and probe.alt_chain_der:
            second = run.validate(probe.alt_chain_der, server.host, run.store_for(server))
            if second.leaf is not None:
                alternate = second
                run.remember(second, source)
    except Exception as exc:  # noqa: BLE001 - one address's failure must not cost the batch
        return Checked(failed_probe(server, probe.address, "validating", exc), None, None)
    return Checked(probe, validation, alternate)


# --- judging -------------------------------------------------------------------------------------
def address_specs(server: Server, checked: Checked, run: ScanPass, now: datetime) -> list[FindingSpec]:
    """The findings of one address (its second certificate's merged in)."""
    probe, validation, alternate = checked.probe, checked.validation, checked.alternate
    due, overdue = server.thresholds(run.policies.get(server.team_id))
    try:
        leaf = validation.leaf if validation else None
        specs = checks.address_checks(
            probe,
            validation,
            host=server.host,
            now=now,
            due_fraction=due,
            overdue_fraction=overdue,
            ari_window=run.ari_window(leaf.sha256) if leaf else None,
        )
        if alternate is not None and alternate.leaf is not None:
            alt_specs = checks.address_checks(
                dataclasses.replace(probe, legacy_versions=[], chain_truncated=False),
                alternate,
                host=server.host,
                now=now,
                due_fraction=due,
                overdue_fraction=overdue,
                ari_window=run.ari_window(alternate.leaf.sha256),
            )
            specs = checks.merge_alternate(specs, alt_specs, alternate.leaf.key_type)
    except Exception as exc:  # noqa: BLE001 - one address's failure must not cost the batch
        failed = failed_probe(server, probe.address, "judging", exc)
        return [FindingSpec("scan_error", failed.error_message, probe.address)]
    return specs


# One server's current results by (address, alternate).
Current = dict[tuple[str, bool], ScanResult]


def primary_writes(server: Server, checked: Checked, current: Current, now: datetime) -> Writes:
    """The address's result row: touched when unchanged, else a new row (and what changed)."""
    probe, validation = checked.probe, checked.validation
    state = digest(probe, [p.sha256 for p in validation.chain] if validation else [])
    previous = current.get((probe.address, False))
    if previous is not None and previous.state_digest == state:
        return Writes(touch=[previous.pk])
    row = result_row(server, probe, validation, state, now)
    retire = [previous.pk] if previous is not None else []
    return _from_changes(change_specs(server, previous, row, now), new_results=[row], retire=retire)


def alternate_writes(server: Server, checked: Checked, current: Current, now: datetime) -> Writes:
    """The second certificate: its own row and history, kept while the address serves it."""
    probe, alternate = checked.probe, checked.alternate
    previous = current.get((probe.address, True))
    if alternate is None or alternate.leaf is None:
        if previous is None or not (probe.alternate_probed or not probe.ok):
            return Writes()
        gone = f"{probe.address} no longer serves a second certificate"
        return Writes(
            retire=[previous.pk], timeline=[timeline_entry(server, probe.address, "alternate_removed", gone, now)]
        )
    leaf = alternate.leaf
    state = digest(probe, [p.sha256 for p in alternate.chain])
    if previous is not None and previous.state_digest == state:
        return Writes(touch=[previous.pk])
    row = result_row(server, probe, alternate, state, now, alternate=True)
    if previous is not None:
        return _from_changes(change_specs(server, previous, row, now), new_results=[row], retire=[previous.pk])
    label = "an RSA" if leaf.key_type == "rsa" else "an ECDSA"
    added = f"{probe.address} also serves {label} certificate {leaf.sha256[:12]}"
    entry = timeline_entry(server, probe.address, "alternate_added", added, now, sha256=leaf.sha256)
    return Writes(new_results=[row], timeline=[entry])


def gone_writes(server: Server, live: set[str], current: Current, now: datetime) -> Writes:
    """Addresses no longer behind the name (not when DNS gave nothing to scan this time)."""
    if not live:
        return Writes()
    gone = [(address, alt, row) for (address, alt), row in current.items() if address not in live]
    return Writes(
        retire=[row.pk for _, _, row in gone],
        timeline=[
            timeline_entry(server, address, "address_removed", f"{address} no longer serves {server.host}", now)
            for address, alt, _ in gone
            if not alt
        ],
    )


def server_writes(server: Server, checked: list[Checked], current: Current, run: ScanPass, now: datetime) -> Writes:
    """Everything one server's scan wants written, its findings among them."""
    parts = [Writes(specs=dns_specs(server))] if not server.pinned_ip else []
    served: list[tuple[str, ParsedCertificate]] = []
    leaf_by_address: dict[str, str] = {}
    for one in checked:
        leaf = one.validation.leaf if one.validation else None
        parts += [
            Writes(specs=address_specs(server, one, run, now)),
            primary_writes(server, one, current, now),
            alternate_writes(server, one, current, now),
        ]
        if one.alternate is not None and one.alternate.leaf is not None:
            served.append((one.probe.address, one.alternate.leaf))
        leaf_by_address[one.probe.address] = leaf.sha256 if leaf else ""
        if leaf is not None:
            served.append((one.probe.address, leaf))
    parts.append(gone_writes(server, {one.probe.address for one in checked}, current, now))
    disagreement = checks.ips_disagree(leaf_by_address)
    parts.append(Writes(specs=([disagreement] if disagreement else []) + store_checks(server, served, now, run)))
    return merged(parts)


# --- the server rows -------------------------------------------------------------------------------
def jittered(server: Server, now: datetime) -> datetime:
    factor = 1 + random.uniform(-JITTER, JITTER)
    return now + timedelta(seconds=server.scan_interval * factor)


def resolution_apply(server: Server, resolution: netguard.Resolution, now: datetime) -> bool:
    """Record a fresh DNS answer on the server row in memory; whether its content changed."""
    before = (server.dns_addresses, server.dns_refused, server.dns_error)
    server.dns_resolved_at = now
    server.dns_addresses = [str(a) for a in resolution.addresses]
    server.dns_refused = [list(r) for r in resolution.refused]
    server.dns_error = resolution.error[:40]
    return before != (server.dns_addresses, server.dns_refused, server.dns_error)


def servers_update(
    servers: Sequence[Server], observed: dict[int, Observed], elapsed_ms: dict[int, int], now: datetime
) -> None:
    """The servers' rows after a scan, in at most four set-based statements, DNS only where it changed.

    The claim ends here (`claimed_until` cleared) and the next scan is due after a jittered interval."""
    for server in servers:
        server.last_scan_at, server.claimed_until = now, None
        server.last_scan_ms, server.next_scan_at = elapsed_ms[server.pk], jittered(server, now)
    update_rows(
        Server,
        ["last_scan_ms", "next_scan_at"],
        [(s.pk, s.last_scan_ms, s.next_scan_at) for s in servers],
        same={"last_scan_at": now, "claimed_until": None},
    )
    resolved = [s for s in servers if observed[s.pk].resolution is not None]
    changed = [s for s in resolved if resolution_apply(s, observed[s.pk].resolution, now)]  # type: ignore[arg-type]
    if resolved:
        Server.objects.filter(pk__in=[s.pk for s in resolved]).update(dns_resolved_at=now)
    update_rows(
        Server,
        ["dns_addresses", "dns_refused", "dns_error"],
        [(s.pk, s.dns_addresses, s.dns_refused, s.dns_error) for s in changed],
    )
    probed = {s.pk for s in servers if observed[s.pk].legacy_probed or observed[s.pk].alternate_probed}
    if probed:
        Server.objects.filter(pk__in=sorted(probed)).update(legacy_checked_at=now)
    for server in servers:
        if server.pk in probed:
            server.legacy_checked_at = now


# --- one pass --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Stored:
    addresses: int
    findings: Counter[str]


def store_observed(
    servers: Sequence[Server],
    observed: dict[int, Observed],
    now: datetime,
    *,
    keep: Callable[[Sequence[Server]], list[Server]] | None = None,
) -> Stored:
    """Validate, judge and write one batch: one transaction, a bounded number of statements.

    `keep`, called first inside the transaction, narrows what is written to the servers the
    caller's claim still holds (monitors/scan_claims.py)."""
    run = ScanPass(servers, now)
    ids = [s.pk for s in servers]
    # One current row per (server, address, alternate): the second certificate of an address
    # (the other key family) has rows of its own, so every reader of current results sees it.
    current: dict[int, Current] = {pk: {} for pk in ids}
    for row in ScanResult.objects.filter(server_id__in=ids, current=True):
        current[row.server_id][(row.address, row.alternate)] = row
    open_findings = {
        (f.server_id, f.code, f.address): f for f in Finding.objects.filter(server_id__in=ids, resolved_at=None)
    }
    checked = {s.pk: [check_address(s, probe, run) for probe in observed[s.pk].probes] for s in servers}
    elapsed = {s.pk: min(sum(c.probe.elapsed_ms for c in checked[s.pk]), 2**31 - 1) for s in servers}
    with transaction.atomic():
        if keep is not None:
            servers = keep(servers)
        # The chains of current results were stored when those rows were written.
        known = {sha for rows in current.values() for row in rows.values() for sha in row.chain_sha256}
        unknown = [
            StoreItem(parsed=p, source="scan", source_ref=ref)
            for sha, (p, ref) in run.parsed.items()
            if sha not in known
        ]
        if unknown:
            certificates_store_bulk(items=unknown)
        servers_update(servers, observed, elapsed, now)
        by_server = {s.pk: server_writes(s, checked[s.pk], current[s.pk], run, now) for s in servers}
        writes = merged(list(by_server.values()))
        # DNS failed: the addresses could not be looked at, so their findings stand.
        dns_failed = {
            s.pk for s in servers if not s.pinned_ip and s.dns_error and not s.dns_addresses and not s.dns_refused
        }
        plan = findings_plan(servers, {pk: w.specs for pk, w in by_server.items()}, open_findings, dns_failed, now)
        if writes.retire:
            ScanResult.objects.filter(pk__in=writes.retire).update(current=False)
        if writes.touch:
            ScanResult.objects.filter(pk__in=writes.touch).update(last_seen=now)
        ScanResult.objects.bulk_create(writes.new_results, batch_size=500)
        TimelineEntry.objects.bulk_create(writes.timeline, batch_size=500)
        findings_apply(plan, now)
        events = writes.events + plan.events
        if events:
            events_record_bulk(events)
    return Stored(sum(len(c) for c in checked.values()), Counter(s.code for w in by_server.values() for s in w.specs))
