"""Scanning servers: resolve, probe every address concurrently, validate, store, run the checks.

`scan_servers(servers)` is the one path every caller uses (the Celery task, `scan --sync`, the
detail page's "scan now", the benchmark). Network work runs first, concurrently on one asyncio
loop with a bound on open connections; then monitors/scan_storing.py validates, judges and writes
everything in one transaction with a handful of set-based statements, whatever the number of
servers.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import partial
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from kcproto import netguard, observing, tlsprobe
from monitors.models import DNS_REFRESH_SECONDS, ScanResult, Server
from monitors.scan_claims import CLAIM_LEASE as CLAIM_LEASE  # the default lease, named here since issue 21
from monitors.scan_claims import ScanClaim, claim_lease
from monitors.scan_storing import Observed, Stored, failed_probe, store_observed

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
    """The network phase through kcproto.observing, the loop keychest-agent runs too."""
    observed: dict[int, Observed] = {}
    plans: list[observing.Plan] = []
    for server in servers:
        seen = observed[server.pk] = Observed(
            legacy_probed=_legacy_due(server, config, now),
            alternate_probed=config.alternate_key and _cadence_due(server, config, now),
        )
        if server.pinned_ip:
            addresses: list[str] | None = [server.pinned_ip]
        elif _needs_dns(server, now, force_dns):
            addresses = None
        else:
            addresses = list(server.dns_addresses)
        plans.append(
            observing.Plan(
                host=server.host,
                port=server.port,
                protocol=server.protocol,
                addresses=addresses,
                legacy=partial(_legacy_wanted, config, seen, server.pk, previous_legacy),
                alternate=partial(_alternate_wanted, config, seen, server.pk, previous_legacy, previous_alternate),
            )
        )
    bounds = observing.Bounds(
        allow_private=config.allow_private,
        deadline=config.deadline,
        connect_timeout=config.connect_timeout,
        dns_timeout=config.dns_timeout,
        nameservers=config.nameservers,
    )
    by_plan = dict(zip(map(id, plans), servers, strict=True))

    def on_error(plan: observing.Plan, address: str, exc: Exception) -> tlsprobe.Probe:
        # One address's failure must not cost the batch.
        return failed_probe(by_plan[id(plan)], address, "probing", exc)

    results = await observing.observe_all(plans, bounds=bounds, concurrency=config.concurrency, on_error=on_error)
    for server, plan, result in zip(servers, plans, results, strict=True):
        seen = observed[server.pk]
        seen.resolution = result.resolution
        seen.resolved_now = plan.addresses is None
        for address, probe in zip(result.addresses, result.probes, strict=True):
            known = previous_legacy.get((server.pk, address))
            if not plan.legacy(address) and probe.ok and not probe.legacy_versions and known:
                probe.legacy_versions = list(known)  # not probed this time: the last answer stands
        seen.probes = result.probes
    return observed


def _legacy_wanted(
    config: ScanConfig, seen: Observed, pk: int, previous_legacy: dict[tuple[int, str], list[str]], address: str
) -> bool:
    """The TLS 1.0/1.1 look: on the daily cadence, and on an address with no earlier answer."""
    return config.legacy_probe and (seen.legacy_probed or previous_legacy.get((pk, address)) is None)


def _alternate_wanted(
    config: ScanConfig,
    seen: Observed,
    pk: int,
    previous_legacy: dict[tuple[int, str], list[str]],
    previous_alternate: set[tuple[int, str]],
    address: str,
) -> bool:
    """The other key family's certificate: looked for on the daily cadence and on new addresses,
    and on every scan where one was found (so its expiry is followed)."""
    return config.alternate_key and (
        seen.alternate_probed or previous_legacy.get((pk, address)) is None or (pk, address) in previous_alternate
    )


def observe(
    servers: Sequence[Server], *, config: ScanConfig, now: datetime, force_dns: bool = False
) -> dict[int, Observed]:
    """The network phase alone (DNS, every probe), for servers with no earlier results: the spot
    check runs it on an unsaved server, then judges without storing."""
    return tlsprobe.run_sync(_observe_all(servers, config, now, force_dns, {}, set()))


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
    _summarise(summary, store_observed(servers, observed, now, keep=keep))
    summary.seconds = time.monotonic() - started
    return summary


def scan_store(servers: Sequence[Server], observed: dict[int, Observed], *, now: datetime) -> ScanSummary:
    """Judge and store observations made elsewhere (a team agent's report) through the same path as
    a scan of our own: the chain is validated and the findings derived here, never taken on trust."""
    started = time.monotonic()
    summary = ScanSummary(servers=len(servers))
    if servers:
        _summarise(summary, store_observed(servers, observed, now))
    summary.seconds = time.monotonic() - started
    return summary


def _summarise(summary: ScanSummary, stored: Stored) -> None:
    summary.addresses, summary.findings = stored.addresses, stored.findings


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
