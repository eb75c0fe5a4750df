"""Scanning servers: resolve, probe every address concurrently, validate, store, run the checks.

`scan_servers(servers)` is the one path every caller uses (the Celery task, `scan --sync`, the
detail page's "scan now", the benchmark). Network work runs first, concurrently on one asyncio
loop with a bound on open connections; then everything is written in one transaction with a
handful of bulk statements, whatever the number of servers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from certificates.ari import windows_for
from certificates.services import StoreItem, certificates_store_bulk
from events.services import NewEvent, events_record_bulk
from kcproto import checks, netguard, tlsprobe
from kcproto.checks import FindingSpec
from kcproto.validation import TrustStore, Validation, trust_store, validate, with_host
from kcproto.x509 import ParsedCertificate
from monitors.models import (
    DNS_REFRESH_SECONDS,
    Finding,
    ScanResult,
    Server,
    TeamScanPolicy,
    TimelineEntry,
)
from monitors.scan_claims import CLAIM_LEASE as CLAIM_LEASE  # the default lease, named here since issue 21
from monitors.scan_claims import ScanClaim, claim_lease
from monitors.scan_findings import (
    Newest,
    change_specs,
    dns_specs,
    findings_apply,
    newest_certificates,
    store_checks,
    timeline_entry,
)

logger = logging.getLogger(__name__)

JITTER = 0.15
# The servers a scan may still store, locked for its storing transaction (`ScanClaim.held`).
Keep = Callable[[Sequence[Server]], list[Server]]


@dataclass(frozen=True)
class ScanConfig:
    """Timeouts and bounds, from settings (see docs/scanner.md)."""

    deadline: float = tlsprobe.DEFAULT_DEADLINE
    connect_timeout: float = tlsprobe.DEFAULT_CONNECT_TIMEOUT
    dns_timeout: float = 5.0
    concurrency: int = 200
    allow_private: bool = False
    nameservers: tuple[tuple[str, int], ...] = ()
    legacy_probe: bool = True
    legacy_interval: float = 24 * 3600
    alternate_key: bool = True

    @classmethod
    def from_settings(cls, **overrides: Any) -> ScanConfig:
        values: dict[str, Any] = {
            "deadline": float(getattr(settings, "KEYCHEST_SCAN_DEADLINE", tlsprobe.DEFAULT_DEADLINE)),
            "connect_timeout": float(
                getattr(settings, "KEYCHEST_SCAN_CONNECT_TIMEOUT", tlsprobe.DEFAULT_CONNECT_TIMEOUT)
            ),
            "dns_timeout": float(getattr(settings, "KEYCHEST_DNS_TIMEOUT", 5.0)),
            "concurrency": int(getattr(settings, "KEYCHEST_SCAN_CONCURRENCY", 200)),
            "allow_private": bool(settings.KEYCHEST_ALLOW_PRIVATE_TARGETS),
            "nameservers": tuple(netguard.parse_nameservers(getattr(settings, "KEYCHEST_DNS_NAMESERVERS", []))),
            "legacy_probe": bool(getattr(settings, "KEYCHEST_SCAN_LEGACY_TLS", True)),
            "legacy_interval": float(getattr(settings, "KEYCHEST_SCAN_LEGACY_INTERVAL", 24 * 3600)),
            "alternate_key": bool(getattr(settings, "KEYCHEST_SCAN_ALTERNATE_KEY", True)),
        }
        values.update(overrides)
        return cls(**values)


@dataclass
class Observed:
    """The network view of one server in this scan."""

    resolution: netguard.Resolution | None = None
    probes: list[tlsprobe.Probe] = field(default_factory=list)
    resolved_now: bool = False
    legacy_probed: bool = False
    alternate_probed: bool = False


@dataclass
class ScanSummary:
    servers: int = 0
    addresses: int = 0
    findings: Counter[str] = field(default_factory=Counter)
    seconds: float = 0.0
    network_seconds: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "servers": self.servers,
            "addresses": self.addresses,
            "findings": dict(sorted(self.findings.items())),
            "seconds": round(self.seconds, 3),
            "network_seconds": round(self.network_seconds, 3),
        }


# --- network phase -----------------------------------------------------------------------------
def _needs_dns(server: Server, now: datetime, force: bool) -> bool:
    """Re-resolve at most every 2 h, unless forced or the last answer was an error or empty."""
    if server.pinned_ip:
        return False
    if force or server.dns_resolved_at is None or server.dns_error or not server.dns_addresses:
        return True
    return (now - server.dns_resolved_at).total_seconds() >= DNS_REFRESH_SECONDS


def _legacy_due(server: Server, config: ScanConfig, now: datetime) -> bool:
    if not config.legacy_probe:
        return False
    return _cadence_due(server, config, now)


def _cadence_due(server: Server, config: ScanConfig, now: datetime) -> bool:
    """The daily second look (TLS 1.0/1.1, the other key family's certificate) is due."""
    if server.legacy_checked_at is None:
        return True
    return (now - server.legacy_checked_at).total_seconds() >= config.legacy_interval


async def _observe_all(
    servers: Sequence[Server],
    config: ScanConfig,
    now: datetime,
    force_dns: bool,
    previous_legacy: dict[tuple[int, str], list[str]],
    previous_alternate: set[tuple[int, str]],
) -> dict[int, Observed]:
    gate = asyncio.Semaphore(max(1, config.concurrency))
    observed: dict[int, Observed] = {s.pk: Observed() for s in servers}

    async def probe_one(server: Server, address: str) -> tlsprobe.Probe:
        known = previous_legacy.get((server.pk, address))
        due = observed[server.pk].legacy_probed or known is None
        legacy = config.legacy_probe and due
        # The other key family's certificate: looked for on the daily cadence and on new
        # addresses, and on every scan where one was found (so its expiry is followed).
        alternate = config.alternate_key and (
            observed[server.pk].alternate_probed or known is None or (server.pk, address) in previous_alternate
        )
        async with gate:
            try:
                probe = await tlsprobe.probe(
                    address,
                    server.port,
                    sni=server.host,
                    protocol=server.protocol,
                    allow_private=config.allow_private,
                    deadline_seconds=config.deadline,
                    connect_timeout=config.connect_timeout,
                    legacy_probe=legacy,
                    alternate_key=alternate,
                )
            except Exception as exc:  # noqa: BLE001 - one address's failure must not cost the batch
                return _failed_probe(server, address, "probing", exc)
        if not legacy and probe.ok and not probe.legacy_versions and known:
            probe.legacy_versions = list(known)  # not probed this time: the last answer stands
        return probe

    async def one(server: Server) -> None:
        seen = observed[server.pk]
        seen.legacy_probed = _legacy_due(server, config, now)
        seen.alternate_probed = config.alternate_key and _cadence_due(server, config, now)
        if server.pinned_ip:
            addresses = [server.pinned_ip]
        elif _needs_dns(server, now, force_dns):
            async with gate:
                seen.resolution = await netguard.resolve_async(
                    server.host,
                    allow_private=config.allow_private,
                    timeout=config.dns_timeout,
                    nameservers=config.nameservers or None,
                )
            seen.resolved_now = True
            addresses = [str(a) for a in seen.resolution.addresses]
        else:
            addresses = list(server.dns_addresses)
        seen.probes = list(await asyncio.gather(*(probe_one(server, a) for a in addresses)))

    await asyncio.gather(*(one(s) for s in servers))
    return observed


def _failed_probe(server: Server, address: str, step: str, exc: Exception) -> tlsprobe.Probe:
    """KeyChest's own failure on one address, as that address's result (`scan_error`), logged."""
    logger.exception("scan of %s:%s at %s failed while %s", server.host, server.port, address, step, exc_info=exc)
    return tlsprobe.Probe(
        address=address,
        port=server.port,
        error_code="scan_error",
        error_message=f"KeyChest failed while {step} this address ({type(exc).__name__}); the error is logged",
    )


# --- storing phase -----------------------------------------------------------------------------
# The digest keeps OpenSSL's spelling of legacy versions, so rows stored before they were named
# "TLS 1.0"/"TLS 1.1" still match an unchanged server.
_DIGEST_NAMES = {name: openssl for openssl, name in tlsprobe.LEGACY_NAMES.items()}


def _digest(probe: tlsprobe.Probe, chain: list[str]) -> str:
    legacy = sorted(_DIGEST_NAMES.get(v, v) for v in probe.legacy_versions)
    state = [probe.error_code, chain, probe.tls_version, probe.cipher, legacy]
    return hashlib.sha256(json.dumps(state).encode()).hexdigest()


def _result_row(
    server: Server,
    probe: tlsprobe.Probe,
    validation: Validation | None,
    digest: str,
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
        state_digest=digest,
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


def _jittered(server: Server, now: datetime) -> datetime:
    factor = 1 + random.uniform(-JITTER, JITTER)
    return now + timedelta(seconds=server.scan_interval * factor)


class ScanPass:
    """The state of one storing pass; caches what many servers share (chains, trust stores)."""

    def __init__(self, servers: Sequence[Server], now: datetime) -> None:
        self.now = now
        self.servers = servers
        self.validations: dict[tuple[tuple[bytes, ...], str, str], Validation] = {}
        self.stores: dict[str, TrustStore] = {}
        self.bundles: dict[str, str] = {}
        self.policies = {p.team_id: p for p in TeamScanPolicy.objects.filter(team_id__in={s.team_id for s in servers})}
        self.parsed: dict[str, tuple[ParsedCertificate, str]] = {}
        self.rate_limits: dict[str, Any] = {}
        # Issuances per exact name set, by registered domain (Let's Encrypt's duplicate limit).
        self.duplicates: dict[str, dict[frozenset[str], int]] = {}
        self.newest: dict[tuple[str, str], Newest] | None = None
        self.ari: dict[str, tuple[datetime, datetime]] | None = None

    def store_for(self, server: Server) -> TrustStore:
        bundle = server.ca_bundle.pem if server.ca_bundle_id and server.ca_bundle else ""
        key = str(server.ca_bundle_id or "")
        if key not in self.stores:
            self.stores[key] = trust_store(bundle)
            self.bundles[self.stores[key].key] = bundle
        return self.stores[key]

    def validate(self, chain_der: list[bytes], host: str, store: TrustStore) -> Validation:
        """Trust and strength are per chain (cached across servers); the host name is per server."""
        key = (tuple(chain_der), "", store.key)
        if key not in self.validations:
            result = validate(chain_der, host, store, now=self.now)
            if result.incomplete_chain and not result.trusted and result.chain:
                # Intermediates the certificate store already knows may complete the path.
                known = _known_issuers(result.chain[-1].issuer)
                if known:
                    bundle = trust_store(self.bundles.get(store.key, ""), known)
                    result = validate(chain_der, host, bundle, now=self.now)
            self.validations[key] = result
        return with_host(dataclasses.replace(self.validations[key]), host)

    def ari_window(self, sha256: str) -> tuple[datetime, datetime] | None:
        """The CA's suggested renewal window of a leaf seen in this pass (one query per pass)."""
        if self.ari is None:
            self.ari = windows_for([sha for sha, (parsed, _) in self.parsed.items() if not parsed.is_ca])
        return self.ari.get(sha256)

    def newest_for(self, host: str, key_type: str) -> Newest | None:
        if self.newest is None:
            self.newest = newest_certificates([s.host for s in self.servers], self.now)
        return self.newest.get((host, key_type))


def _known_issuers(issuer_text: str) -> str:
    """PEM of CA certificates in the store whose subject is `issuer_text`."""
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding

    from certificates.models import Certificate

    pems: list[str] = []
    for der in Certificate.objects.filter(subject=issuer_text, is_ca=True, thinned=False).values_list("der", flat=True)[
        :5
    ]:
        try:
            pems.append(x509.load_der_x509_certificate(bytes(der)).public_bytes(Encoding.PEM).decode())
        except ValueError:
            continue
    return "".join(pems)


def scan_servers(
    servers: Sequence[Server],
    *,
    config: ScanConfig | None = None,
    now: datetime | None = None,
    force_dns: bool = False,
    keep: Keep | None = None,
) -> ScanSummary:
    """Scan `servers` now (network first, then one transaction of bulk writes).

    `keep`, called inside the storing transaction, narrows what is stored to the servers the
    caller's claim still holds.
    """
    config = config or ScanConfig.from_settings()
    started = time.monotonic()
    summary = ScanSummary(servers=len(servers))
    if not servers:
        return summary
    now = now or timezone.now()
    previous_legacy: dict[tuple[int, str], list[str]] = {}
    previous_alternate: set[tuple[int, str]] = set()
    for sid, address, legacy, alternate in ScanResult.objects.filter(
        server_id__in=[s.pk for s in servers], current=True, error_code=""
    ).values_list("server_id", "address", "legacy_tls", "alternate"):
        if alternate:
            previous_alternate.add((sid, address))
        else:
            previous_legacy[(sid, address)] = legacy
    observed = tlsprobe.run_sync(_observe_all(servers, config, now, force_dns, previous_legacy, previous_alternate))
    summary.network_seconds = time.monotonic() - started
    _store(servers, observed, now, summary, keep)
    summary.seconds = time.monotonic() - started
    return summary


def scan_store(servers: Sequence[Server], observed: dict[int, Observed], *, now: datetime) -> ScanSummary:
    """Judge and store observations made elsewhere (a team agent's report) through the same path as
    a scan of our own: the chain is validated and the findings derived here, never taken on trust."""
    started = time.monotonic()
    summary = ScanSummary(servers=len(servers))
    if servers:
        _store(servers, observed, now, summary, None)
    summary.seconds = time.monotonic() - started
    return summary


def _store(
    servers: Sequence[Server], observed: dict[int, Observed], now: datetime, summary: ScanSummary, keep: Keep | None
) -> None:
    run = ScanPass(servers, now)
    ids = [s.pk for s in servers]
    # One current row per (server, address, alternate): the second certificate of an address
    # (the other key family) has rows of its own, so every reader of current results sees it.
    current: dict[tuple[int, str, bool], ScanResult] = {
        (r.server_id, r.address, r.alternate): r for r in ScanResult.objects.filter(server_id__in=ids, current=True)
    }
    open_findings: dict[tuple[int, str, str], Finding] = {
        (f.server_id, f.code, f.address): f for f in Finding.objects.filter(server_id__in=ids, resolved_at=None)
    }
    specs_by_server: dict[int, list[FindingSpec]] = {}
    new_results: list[ScanResult] = []
    retire_ids: list[int] = []
    touch_ids: list[int] = []
    timeline: list[TimelineEntry] = []
    events: list[NewEvent] = []
    keep_address_findings: set[int] = set()

    # 1. Validate and collect certificates to store.
    per_server: dict[int, list[tuple[tlsprobe.Probe, Validation | None]]] = {}
    alternates: dict[tuple[int, str], Validation] = {}
    for server in servers:
        seen = observed[server.pk]
        rows: list[tuple[tlsprobe.Probe, Validation | None]] = []
        for probe in seen.probes:
            validation = None
            try:
                if probe.ok and probe.chain_der:
                    validation = run.validate(probe.chain_der, server.host, run.store_for(server))
                    for parsed in validation.chain:
                        run.parsed.setdefault(parsed.sha256, (parsed, f"{server.host}:{server.port}"))
                if probe.ok and probe.alt_chain_der:
                    second = run.validate(probe.alt_chain_der, server.host, run.store_for(server))
                    if second.leaf is not None:
                        alternates[(server.pk, probe.address)] = second
                        for parsed in second.chain:
                            run.parsed.setdefault(parsed.sha256, (parsed, f"{server.host}:{server.port}"))
            except Exception as exc:  # noqa: BLE001 - one address's failure must not cost the batch
                probe, validation = _failed_probe(server, probe.address, "validating", exc), None
                alternates.pop((server.pk, probe.address), None)
            rows.append((probe, validation))
        per_server[server.pk] = rows
        summary.addresses += len(rows)

    with transaction.atomic():
        if keep is not None:
            servers = keep(servers)
        if run.parsed:
            certificates_store_bulk(
                items=[StoreItem(parsed=p, source="scan", source_ref=ref) for p, ref in run.parsed.values()]
            )
        for server in servers:
            seen = observed[server.pk]
            specs: list[FindingSpec] = []
            due, overdue = server.thresholds(run.policies.get(server.team_id))
            if seen.resolution is not None:
                server.dns_resolved_at = now
                server.dns_addresses = [str(a) for a in seen.resolution.addresses]
                server.dns_refused = [list(r) for r in seen.resolution.refused]
                server.dns_error = seen.resolution.error[:40]
            if not server.pinned_ip:
                specs.extend(dns_specs(server))
                if server.dns_error and not server.dns_addresses and not server.dns_refused:
                    keep_address_findings.add(server.pk)
            leaf_by_address: dict[str, str] = {}
            served: list[tuple[str, ParsedCertificate]] = []
            for probe, validation in per_server[server.pk]:
                alternate = alternates.get((server.pk, probe.address))
                alt_leaf = alternate.leaf if alternate else None
                try:
                    address_specs = checks.address_checks(
                        probe,
                        validation,
                        host=server.host,
                        now=now,
                        due_fraction=due,
                        overdue_fraction=overdue,
                        ari_window=run.ari_window(validation.leaf.sha256) if validation and validation.leaf else None,
                    )
                    if alternate is not None and alt_leaf is not None:
                        alt_specs = checks.address_checks(
                            dataclasses.replace(probe, legacy_versions=[], chain_truncated=False),
                            alternate,
                            host=server.host,
                            now=now,
                            due_fraction=due,
                            overdue_fraction=overdue,
                            ari_window=run.ari_window(alt_leaf.sha256),
                        )
                        address_specs = checks.merge_alternate(address_specs, alt_specs, alt_leaf.key_type)
                except Exception as exc:  # noqa: BLE001 - one address's failure must not cost the batch
                    failed = _failed_probe(server, probe.address, "judging", exc)
                    address_specs = [FindingSpec("scan_error", failed.error_message, probe.address)]
                if alternate is not None and alt_leaf is not None:
                    served.append((probe.address, alt_leaf))
                specs.extend(address_specs)
                chain = [p.sha256 for p in validation.chain] if validation else []
                leaf = validation.leaf if validation else None
                leaf_by_address[probe.address] = leaf.sha256 if leaf else ""
                if leaf is not None:
                    served.append((probe.address, leaf))
                digest = _digest(probe, chain)
                previous = current.get((server.pk, probe.address, False))
                if previous is not None and previous.state_digest == digest:
                    touch_ids.append(previous.pk)
                else:
                    row = _result_row(server, probe, validation, digest, now)
                    new_results.append(row)
                    if previous is not None:
                        retire_ids.append(previous.pk)
                    specs.extend(change_specs(server, previous, row, timeline, events, now))
                # The second certificate: its own row and history, kept while the address serves it.
                previous_alt = current.get((server.pk, probe.address, True))
                if alternate is not None and alt_leaf is not None:
                    alt_digest = _digest(probe, [p.sha256 for p in alternate.chain])
                    if previous_alt is not None and previous_alt.state_digest == alt_digest:
                        touch_ids.append(previous_alt.pk)
                        continue
                    alt_row = _result_row(server, probe, alternate, alt_digest, now, alternate=True)
                    new_results.append(alt_row)
                    if previous_alt is None:
                        label = "an RSA" if alt_leaf.key_type == "rsa" else "an ECDSA"
                        timeline.append(
                            timeline_entry(
                                server,
                                probe.address,
                                "alternate_added",
                                f"{probe.address} also serves {label} certificate {alt_leaf.sha256[:12]}",
                                now,
                                sha256=alt_leaf.sha256,
                            )
                        )
                    else:
                        retire_ids.append(previous_alt.pk)
                        specs.extend(change_specs(server, previous_alt, alt_row, timeline, events, now))
                elif previous_alt is not None and (probe.alternate_probed or not probe.ok):
                    retire_ids.append(previous_alt.pk)
                    timeline.append(
                        timeline_entry(
                            server,
                            probe.address,
                            "alternate_removed",
                            f"{probe.address} no longer serves a second certificate",
                            now,
                        )
                    )
            # Addresses no longer behind the name (not when DNS gave nothing to scan this time).
            if per_server[server.pk]:
                live = {p.address for p, _ in per_server[server.pk]}
                for (sid, address, alternate_row), row in current.items():
                    if sid == server.pk and address not in live:
                        retire_ids.append(row.pk)
                        if alternate_row:
                            continue
                        timeline.append(
                            timeline_entry(
                                server, address, "address_removed", f"{address} no longer serves {server.host}", now
                            )
                        )
            disagreement = checks.ips_disagree(leaf_by_address)
            if disagreement is not None:
                specs.append(disagreement)
            specs.extend(store_checks(server, served, now, run))
            specs_by_server[server.pk] = specs
            summary.findings.update(s.code for s in specs)
            server.last_scan_at = now
            server.last_scan_ms = min(sum(p.elapsed_ms for p, _ in per_server[server.pk]), 2**31 - 1)
            server.next_scan_at = _jittered(server, now)
            server.claimed_until = None
            if seen.legacy_probed or seen.alternate_probed:
                server.legacy_checked_at = now

        if retire_ids:
            ScanResult.objects.filter(pk__in=retire_ids).update(current=False)
        if touch_ids:
            ScanResult.objects.filter(pk__in=touch_ids).update(last_seen=now)
        ScanResult.objects.bulk_create(new_results, batch_size=500)
        TimelineEntry.objects.bulk_create(timeline, batch_size=500)
        findings_apply(servers, specs_by_server, open_findings, keep_address_findings, now, events)
        Server.objects.bulk_update(
            servers,
            [
                "dns_resolved_at",
                "dns_addresses",
                "dns_refused",
                "dns_error",
                "last_scan_at",
                "last_scan_ms",
                "next_scan_at",
                "claimed_until",
                "legacy_checked_at",
            ],
            batch_size=500,
        )
        if events:
            events_record_bulk(events)


def servers_claim_due(*, limit: int = 200, now: datetime | None = None, lease: timedelta | None = None) -> list[int]:
    """Claim up to `limit` due servers atomically (skip rows another scheduler holds).

    The claim holds for `lease` (default `claim_lease()`); its end, `now + lease`, is the token
    the batch message carries (`scan_claimed`).
    """
    now = now or timezone.now()
    lease = lease or claim_lease()
    with transaction.atomic():
        due = (
            # A server assigned to a team agent is scanned by that agent only (agents/).
            Server.objects.filter(removed_at=None, paused=False, agent=None, next_scan_at__lte=now)
            .filter(Q(claimed_until=None) | Q(claimed_until__lt=now))
            .order_by("next_scan_at")
            .select_for_update(skip_locked=True)
        )
        ids = list(due.values_list("id", flat=True)[:limit])
        if ids:
            # The conditional update is the claim itself: a row someone else claimed meanwhile is not ours.
            Server.objects.filter(pk__in=ids).filter(Q(claimed_until=None) | Q(claimed_until__lt=now)).update(
                claimed_until=now + lease
            )
    return ids


def scan_server_ids(ids: Sequence[int], *, config: ScanConfig | None = None, force_dns: bool = False) -> ScanSummary:
    """Scan the servers with these ids that are still watched (removed or paused ones are skipped),
    except those a team agent scans: the SaaS never connects to them."""
    servers = list(
        Server.objects.filter(pk__in=list(ids), removed_at=None, agent=None).select_related("ca_bundle").order_by("pk")
    )
    return scan_servers(servers, config=config, force_dns=force_dns)


def scan_claimed(
    ids: Sequence[int], *, token: datetime | None = None, config: ScanConfig | None = None, force_dns: bool = False
) -> ScanSummary:
    """Scan a queued batch under a claim: take the servers it still may scan, renew the lease
    while scanning, store only what the claim still holds (monitors/scan_claims.py)."""
    claim = ScanClaim.take(ids, token=token)
    if not claim.ids:
        return ScanSummary()
    with claim.renewing():
        servers = list(Server.objects.filter(pk__in=claim.ids).select_related("ca_bundle").order_by("pk"))
        return scan_servers(servers, config=config, force_dns=force_dns, keep=claim.held)
