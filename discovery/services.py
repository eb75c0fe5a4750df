"""Writes about IP ranges: add (with the SaaS's limits), remove, sweep the due ones, store what a
sweep found (new and vanished services are events), and watch a found service.

The sweep itself is kcproto.sweep, the same code `keychest-agent` runs for ranges assigned to it.
"""

from __future__ import annotations

import ipaddress
import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import Model, Q
from django.utils import timezone

from discovery.models import DEFAULT_CADENCE, DEFAULT_PORTS, FoundService, IPRange
from events.models import EventKind, Severity
from events.services import NewEvent, events_record_bulk
from kcproto import netguard, sweep, tlsprobe
from kcproto.x509 import CertificateParseError, parse_certificate
from monitors.models import Server, WatchedDomain
from monitors.services import AlreadyWatched, server_enrol

if TYPE_CHECKING:
    from keychest.accounts.models import Team, User

MAX_PREFIX_ADDRESSES = sweep.MAX_RANGE_ADDRESSES
CLAIM_LEASE = timedelta(hours=1)
SWEEP_LOCK = "discovery:sweeping"
JITTER = 0.1
# An agent's sweep report arrives in parts of at most agentwire.MAX_BATCH_BYTES each.
MAX_SWEEP_PARTS = 1000


class RangeRefused(ValueError):
    """A range the team may not sweep (too large, not public, over quota, malformed)."""


def _ports(ports: Sequence[int | str] | None) -> list[int]:
    out: list[int] = []
    for value in ports or DEFAULT_PORTS:
        try:
            port = int(value)
        except (TypeError, ValueError):
            raise RangeRefused(f"{value!r} is not a port") from None
        if not 1 <= port <= 65535:
            raise RangeRefused(f"{port} is not a port")
        if port not in out:
            out.append(port)
    if len(out) > sweep.MAX_PORTS:
        raise RangeRefused(f"at most {sweep.MAX_PORTS} ports per range")
    return out


def range_add(
    *,
    team: Team,
    cidr: str,
    ports: Sequence[int | str] | None = None,
    label: str = "",
    agent: Model | None = None,  # an agents.Agent of the team (agents sit above discovery)
    cadence: int | None = None,
    rate: float | None = None,
) -> IPRange:
    """Add a range to sweep. On the SaaS only public ranges, unless an agent sweeps it (or private
    targets are allowed); at most a /22 (1024 addresses) and a quota of ranges per team."""
    try:
        network = ipaddress.ip_network(cidr.strip(), strict=False)
    except ValueError:
        raise RangeRefused(f"{cidr[:60]!r} is not a CIDR range") from None
    if network.num_addresses > MAX_PREFIX_ADDRESSES:
        raise RangeRefused(f"a range holds at most {MAX_PREFIX_ADDRESSES} addresses (an IPv4 /22)")
    if agent is not None and agent.team_id != team.pk:  # type: ignore[attr-defined]
        raise RangeRefused("agent of another team")
    if agent is None and not settings.KEYCHEST_ALLOW_PRIVATE_TARGETS:
        reason = netguard.network_refusal(network)
        if reason is not None:
            raise RangeRefused(f"{network} is not public ({reason}): sweep it through an agent in that network")
    quota = settings.KEYCHEST_DISCOVERY_MAX_RANGES
    with transaction.atomic():
        if IPRange.objects.for_team(team).filter(removed_at=None).select_for_update().count() >= quota:
            raise RangeRefused(f"a team may sweep at most {quota} ranges")
        if IPRange.objects.for_team(team).filter(removed_at=None, cidr=str(network)).exists():
            raise RangeRefused(f"{network} is already swept")
        return IPRange.objects.create(
            team=team,
            cidr=str(network),
            label=label.strip()[:100],
            ports=_ports(ports),
            agent_id=agent.pk if agent is not None else None,
            cadence=int(cadence or DEFAULT_CADENCE),
            rate=min(float(rate or settings.KEYCHEST_DISCOVERY_RANGE_RATE), settings.KEYCHEST_DISCOVERY_RATE),
            next_sweep_at=timezone.now(),
        )


def range_remove(*, ip_range: IPRange) -> IPRange:
    ip_range.removed_at = timezone.now()
    ip_range.save(update_fields=["removed_at"])
    return ip_range


# --- sweeping -----------------------------------------------------------------------------------
def ranges_claim_due(*, limit: int = 20, now: datetime | None = None) -> list[int]:
    """Claim due ranges the SaaS sweeps itself (never an agent's), as many as one pass can sweep
    at the global rate within the claim (at least one)."""
    now = now or timezone.now()
    budget = CLAIM_LEASE.total_seconds() * 0.8 * float(settings.KEYCHEST_DISCOVERY_RATE)
    with transaction.atomic():
        due = (
            IPRange.objects.filter(removed_at=None, agent=None, next_sweep_at__lte=now)
            .filter(Q(claimed_until=None) | Q(claimed_until__lt=now))
            .order_by("next_sweep_at")
            .select_for_update(skip_locked=True)
        )
        ids: list[int] = []
        attempts = 0
        for pk, cidr, ports in due.values_list("id", "cidr", "ports")[:limit]:
            size = ipaddress.ip_network(cidr).num_addresses * max(1, len(ports))
            if ids and attempts + size > budget:
                break
            ids.append(pk)
            attempts += size
        IPRange.objects.filter(pk__in=ids).update(claimed_until=now + CLAIM_LEASE)
    return ids


def ranges_sweep_due(*, now: datetime | None = None) -> int:
    """One sweeping pass at a time in the whole deployment, so that the global rate limit holds
    across workers; returns how many ranges were swept."""
    if not cache.add(SWEEP_LOCK, "1", timeout=int(CLAIM_LEASE.total_seconds())):
        return 0
    try:
        ids = ranges_claim_due(now=now)
        if ids:
            ranges_sweep(ids)
        return len(ids)
    finally:
        cache.delete(SWEEP_LOCK)


def watched_names(team_id: int) -> list[str]:
    """Names to ask by SNI when a found certificate covers them: the team's servers and domains."""
    hosts = Server.objects.filter(team_id=team_id, removed_at=None).values_list("host", flat=True)
    domains = WatchedDomain.objects.filter(team_id=team_id, removed_at=None).values_list("domain", flat=True)
    return sorted({*hosts[:1000], *domains[:1000]})


def ranges_sweep(ids: Sequence[int], *, seed: int | None = None) -> dict[int, sweep.SweepResult]:
    """Sweep these ranges concurrently under one global rate limit and a limit per range."""
    ranges = list(IPRange.objects.filter(pk__in=list(ids), removed_at=None, agent=None))
    names = {r.team_id: watched_names(r.team_id) for r in ranges}
    results = tlsprobe.run_sync(
        sweep.sweep_ranges(
            [sweep.RangeJob(r.cidr, r.ports, r.rate, names[r.team_id]) for r in ranges],
            shared=sweep.RateLimiter(settings.KEYCHEST_DISCOVERY_RATE),
            allow_private=settings.KEYCHEST_ALLOW_PRIVATE_TARGETS,
            deadline=float(settings.KEYCHEST_SCAN_DEADLINE),
            connect_timeout=float(settings.KEYCHEST_SCAN_CONNECT_TIMEOUT),
            rng=random.Random(seed),
        )
    )
    now = timezone.now()
    for ip_range, result in zip(ranges, results, strict=True):
        services_store(
            ip_range=ip_range, services=result.services, now=now, seconds=result.seconds, attempts=result.attempts
        )
    return {r.pk: res for r, res in zip(ranges, results, strict=True)}


def _certificate_facts(probe: tlsprobe.Probe) -> dict[str, object]:
    if not probe.chain_der:
        return {}
    try:
        leaf = parse_certificate(probe.chain_der[0])
    except (CertificateParseError, ValueError):
        return {}
    return {
        "leaf_sha256": leaf.sha256,
        "subject": leaf.subject[:500],
        "issuer": leaf.issuer[:500],
        "names": list((leaf.names + leaf.ip_addresses)[:100]),
        "not_after": leaf.not_after,
    }


def services_store(
    *,
    ip_range: IPRange,
    services: Sequence[sweep.Service],
    now: datetime,
    seconds: float | None = None,
    attempts: int | None = None,
) -> tuple[int, int]:
    """Store a whole sweep's findings: new services and vanished ones raise events. Returns (new, vanished).

    The certificate facts are read here from the chain, whoever swept (the SaaS or an agent)."""
    with transaction.atomic():
        new, events = _services_upsert(ip_range, services, now)
        vanished, gone = _sweep_complete(ip_range, since=now, now=now, seconds=seconds, attempts=attempts)
        if events or gone:
            events_record_bulk(events + gone)
    return new, vanished


@dataclass
class PartOutcome:
    """What one part of a sweep did: services new, vanished (only on the last part), whether the
    whole sweep is in now, and whether this part had arrived before (a resent part is ignored)."""

    new: int = 0
    vanished: int = 0
    complete: bool = False
    duplicate: bool = False


def sweep_part_store(
    *,
    ip_range: IPRange,
    sweep_id: str,
    part: int,
    parts: int,
    services: Sequence[sweep.Service],
    now: datetime,
    seconds: float | None = None,
) -> PartOutcome:
    """Store one part of an agent's sweep (a sweep of a /22 can outgrow one request).

    Each part's services are stored (new ones raise events) as it arrives; vanished services are
    judged only when the last missing part of the same sweep is in: a service is vanished when no
    part of this sweep saw it (its last_seen predates the sweep's first part). A sweep left partial
    (a part refused or lost) never marks anything vanished; the next sweep (another id) starts over."""
    if not 0 <= part < parts <= MAX_SWEEP_PARTS:
        raise RangeRefused(f"part {part} of {parts}: a sweep has 1 to {MAX_SWEEP_PARTS} parts")
    outcome = PartOutcome()
    with transaction.atomic():
        locked = IPRange.objects.select_for_update().get(pk=ip_range.pk)
        if locked.partial_sweep != sweep_id:
            locked.partial_sweep, locked.partial_parts, locked.partial_since = sweep_id, [], now
        if part in locked.partial_parts:
            outcome.duplicate = True
            return outcome
        assert locked.partial_since is not None
        outcome.new, events = _services_upsert(locked, services, now)
        locked.partial_parts = sorted({*locked.partial_parts, part})
        if len(locked.partial_parts) >= parts:
            outcome.complete = True
            outcome.vanished, gone = _sweep_complete(
                locked, since=locked.partial_since, now=now, seconds=seconds, attempts=None
            )
            events += gone
            locked.partial_sweep, locked.partial_parts, locked.partial_since = "", [], None
        locked.save(update_fields=["partial_sweep", "partial_parts", "partial_since"])
        if events:
            events_record_bulk(events)
    return outcome


def _services_upsert(ip_range: IPRange, services: Sequence[sweep.Service], now: datetime) -> tuple[int, list[NewEvent]]:
    """Rows for services seen now (last_seen = now); a new or returning one is a `service_found`."""
    network = ipaddress.ip_network(ip_range.cidr)
    events: list[NewEvent] = []
    wanted: dict[tuple[str, int, str], sweep.Service] = {}
    for service in services:
        if ipaddress.ip_address(service.address) not in network or service.port not in ip_range.ports:
            continue  # an agent reporting outside its range: not ours to store
        wanted.setdefault((service.address, service.port, service.sni), service)
    if not wanted:
        return 0, events
    addresses = {key[0] for key in wanted}
    known = {
        (s.address, s.port, s.sni): s for s in FoundService.objects.filter(ip_range=ip_range, address__in=addresses)
    }
    for key, service in wanted.items():
        facts = _certificate_facts(service.probe)
        row = known.get(key)
        if row is None:
            row = FoundService(
                team_id=ip_range.team_id,
                ip_range=ip_range,
                address=service.address,
                port=service.port,
                protocol=service.protocol[:10],
                sni=service.sni[:253],
                first_seen=now,
                last_seen=now,
            )
        is_new = row.pk is None or row.vanished_at is not None
        row.vanished_at = None
        row.last_seen = now
        row.tls_version = service.probe.tls_version[:16]
        for name, value in facts.items():
            setattr(row, name, value)
        row.save()
        if is_new:
            events.append(_event(ip_range, row, EventKind.SERVICE_FOUND, now))
    return len(events), events


def _sweep_complete(
    ip_range: IPRange, *, since: datetime, now: datetime, seconds: float | None, attempts: int | None
) -> tuple[int, list[NewEvent]]:
    """A whole sweep is in: services it did not see (last seen before `since`) vanished; the range
    is due again after its cadence."""
    events: list[NewEvent] = []
    gone = FoundService.objects.filter(ip_range=ip_range, vanished_at=None, last_seen__lt=since)
    for row in gone:
        row.vanished_at = now
        row.save(update_fields=["vanished_at"])
        events.append(_event(ip_range, row, EventKind.SERVICE_VANISHED, now))
    ip_range.last_sweep_at = now
    ip_range.last_sweep_seconds = seconds
    ip_range.last_sweep_attempts = attempts
    ip_range.claimed_until = None
    ip_range.next_sweep_at = now + timedelta(seconds=ip_range.cadence * (1 + random.uniform(-JITTER, JITTER)))
    ip_range.save(
        update_fields=["last_sweep_at", "last_sweep_seconds", "last_sweep_attempts", "claimed_until", "next_sweep_at"]
    )
    return len(events), events


def _event(ip_range: IPRange, row: FoundService, kind: str, now: datetime) -> NewEvent:
    where = f"{row.address}:{row.port}" + (f" ({row.sni})" if row.sni else "")
    return NewEvent(
        team_id=ip_range.team_id,
        kind=kind,
        subject=where,
        dedup_key=f"range:{ip_range.uuid}:{kind}:{where}:{now.isoformat()}",
        severity=Severity.INFO if kind == EventKind.SERVICE_FOUND else Severity.WARNING,
        payload={
            "range": str(ip_range.uuid),
            "cidr": ip_range.cidr,
            "address": row.address,
            "port": row.port,
            "sni": row.sni,
            "names": row.names[:20],
            "sha256": row.leaf_sha256,
        },
        occurred_at=now,
    )


# --- watching what was found --------------------------------------------------------------------
def service_watch(*, service: FoundService, name: str = "", added_by: User | None = None) -> Server:
    """Watch a found service: as `name` (one of the names in its certificate) pinned to its address,
    or as the bare address. Scanned by the range's agent when an agent swept it."""
    host = name or service.address
    if name and name not in service.names:
        raise RangeRefused(f"{name!r} is not a name in this service's certificate")
    try:
        server = server_enrol(
            team=service.ip_range.team,
            host=host,
            port=service.port,
            protocol=service.protocol,
            pinned_ip=service.address,
            added_by=added_by,
        )
    except AlreadyWatched as exc:
        server = exc.server
    if service.ip_range.agent_id and server.agent_id != service.ip_range.agent_id:
        Server.objects.filter(pk=server.pk).update(agent_id=service.ip_range.agent_id)
        server.agent_id = service.ip_range.agent_id
    return server
