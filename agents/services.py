"""Writes about agents: create (a one-time token), enrol (token -> agent key), revoke, assign
targets, and the two calls of the agent protocol (work list, results).

A report is observations only. The server validates every chain and derives every finding itself
through `monitors.scanning.scan_store`, the storing path of its own scans, so an agent (buggy or
hostile) cannot make a certificate it did not send look fine.
"""

from __future__ import annotations

import hashlib
import re
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import transaction
from django.db.models import Q, QuerySet
from django.utils import timezone

from agents.models import DEFAULT_CADENCE, ENROLMENT_TOKEN_HOURS, MAX_CADENCE, MIN_CADENCE, Agent
from discovery.models import IPRange
from discovery.services import RangeRefused, services_store, sweep_part_store, watched_names
from events.models import EventKind, Severity
from events.services import NewEvent, events_record_bulk
from kcproto import agentwire, sweep
from kcproto.agentwire import WireError
from monitors.models import ScanResult, Server, TeamCABundle, WatchedDomain
from monitors.scanning import Observed, ScanSummary, scan_store

if TYPE_CHECKING:
    from keychest.accounts.models import Team

TOKEN_PREFIX = "kcat_"  # noqa: S105 - a prefix, not a secret
KEY_PREFIX = "kcag_"
SWEEP_ID = re.compile(r"[A-Za-z0-9_-]{1,40}")


class AgentRefused(Exception):
    """An enrolment or report the server does not accept (unknown, used or expired token...)."""


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def _secret(prefix: str) -> str:
    return prefix + secrets.token_urlsafe(32)


def _cadence(value: int | None) -> int:
    cadence = DEFAULT_CADENCE if value is None else int(value)
    if not MIN_CADENCE <= cadence <= MAX_CADENCE:
        raise ValueError(f"cadence must be between {MIN_CADENCE} and {MAX_CADENCE} seconds")
    return cadence


# --- life cycle ---------------------------------------------------------------------------------
def agent_create(*, team: Team, name: str, cadence: int | None = None) -> tuple[Agent, str]:
    """A new agent waiting for enrolment, and its one-time token (shown once, stored hashed)."""
    name = name.strip()[:100]
    if not name:
        raise ValueError("an agent needs a name")
    token = _secret(TOKEN_PREFIX)
    agent = Agent.objects.create(
        team=team,
        name=name,
        cadence=_cadence(cadence),
        token_hash=secret_hash(token),
        token_expires_at=timezone.now() + timedelta(hours=ENROLMENT_TOKEN_HOURS),
    )
    return agent, token


def agent_enrol(*, token: str, version: str = "", ip: str | None = None) -> tuple[Agent, str]:
    """Exchange a one-time token for the agent key (shown once, stored hashed); the token dies."""
    now = timezone.now()
    if not token.startswith(TOKEN_PREFIX) or len(token) > 100:
        raise AgentRefused("unknown, used or expired enrolment token")
    key = _secret(KEY_PREFIX)
    with transaction.atomic():
        agent = (
            Agent.objects.select_for_update()
            .filter(token_hash=secret_hash(token), revoked_at=None, token_expires_at__gt=now)
            .first()
        )
        if agent is None:
            raise AgentRefused("unknown, used or expired enrolment token")
        agent.token_hash = ""
        agent.token_expires_at = None
        agent.key_hash = secret_hash(key)
        agent.key_prefix = key[: len(KEY_PREFIX) + 6]
        agent.enrolled_at = now
        agent.last_contact_at = now
        agent.last_ip = ip
        agent.version = version[:40]
        agent.save()
    return agent, key


def agent_authenticate(key: str) -> Agent | None:
    """The active agent holding this key, or None (unknown or revoked)."""
    if not key.startswith(KEY_PREFIX) or len(key) > 100:
        return None
    return (
        Agent.objects.select_related("team")
        .filter(key_hash=secret_hash(key), revoked_at=None, enrolled_at__isnull=False)
        .first()
    )


def agent_revoke(*, agent: Agent) -> Agent:
    """The agent's key stops working at once. Its servers stay assigned (and so unscanned by the
    SaaS: their addresses are the team's private network) until assigned elsewhere."""
    if agent.revoked_at is None:
        agent.revoked_at = timezone.now()
        agent.token_hash = ""
        agent.save(update_fields=["revoked_at", "token_hash"])
    return agent


def agent_contact(*, agent: Agent, ip: str | None, version: str, agent_time: datetime | None) -> Agent:
    """Record a request: last contact, version, address, and the agent's clock skew."""
    now = timezone.now()
    agent.last_contact_at = now
    agent.last_ip = ip
    if version:
        agent.version = version[:40]
    if agent_time is not None:
        agent.clock_skew = round((agent_time - now).total_seconds(), 3)
    agent.silent_since = None
    agent.save(update_fields=["last_contact_at", "last_ip", "version", "clock_skew", "silent_since"])
    return agent


# --- assignment ---------------------------------------------------------------------------------
def _same_team(agent: Agent | None, team_id: int) -> None:
    if agent is not None and agent.team_id != team_id:
        raise ValueError("agent of another team")


def server_assign(*, server: Server, agent: Agent | None) -> Server:
    """Scan `server` through `agent` (None: the SaaS scans it again), from its next due time on."""
    _same_team(agent, server.team_id)
    server.agent = agent
    server.claimed_until = None
    server.next_scan_at = timezone.now()
    server.save(update_fields=["agent", "claimed_until", "next_scan_at"])
    return server


def domain_assign(*, domain: WatchedDomain, agent: Agent | None) -> int:
    """Servers under `domain` (now and enrolled later) are scanned by `agent`; returns how many moved."""
    _same_team(agent, domain.team_id)
    with transaction.atomic():
        domain.agent = agent
        domain.save(update_fields=["agent"])
        under = Server.objects.for_team(domain.team).filter(
            Q(host=domain.domain) | Q(host__endswith=f".{domain.domain}"), removed_at=None
        )
        return under.update(agent=agent, claimed_until=None, next_scan_at=timezone.now())


# --- the protocol: work list --------------------------------------------------------------------
def agent_servers(agent: Agent) -> QuerySet[Server]:
    return Server.objects.for_team(agent.team).filter(agent=agent, removed_at=None, paused=False)


def agent_work(
    *, agent: Agent, now: datetime | None = None, after: str = "", limit: int | None = None
) -> dict[str, Any]:
    """One page of what the agent scans next: targets (due ones flagged) in id order after the
    cursor `after`, at most `limit` (KEYCHEST_AGENT_WORK_PAGE), and `next`, the cursor of the
    following page (None on the last). The first page (no cursor) also carries the team's private
    CAs and the ranges to sweep; a team with many servers never outgrows one answer."""
    now = now or timezone.now()
    page = int(settings.KEYCHEST_AGENT_WORK_PAGE)
    limit = page if limit is None else max(1, min(int(limit), page))
    servers = agent_servers(agent).order_by("uuid")
    if after:
        cursor = _uuids([after[:40]])
        if not cursor:
            raise AgentRefused("after is the `next` cursor of the previous page")
        servers = servers.filter(uuid__gt=cursor[0])
    rows = list(servers[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    legacy_interval = float(getattr(settings, "KEYCHEST_SCAN_LEGACY_INTERVAL", 24 * 3600))
    targets = []
    for server in rows:
        second_look = server.legacy_checked_at is None or (
            (now - server.legacy_checked_at).total_seconds() >= legacy_interval
        )
        targets.append(
            agentwire.Target(
                id=str(server.uuid),
                host=server.host,
                port=server.port,
                protocol=server.protocol,
                pinned_ip=server.pinned_ip or "",
                legacy_probe=second_look,
                alternate_key=second_look,
                due=server.next_scan_at is None or server.next_scan_at <= now,
            ).as_dict()
        )
    body: dict[str, Any] = {
        "protocol": agentwire.PROTOCOL_VERSION,
        "agent": str(agent.uuid),
        "cadence": agent.cadence,
        "server_time": now.isoformat(),
        "targets": targets,
        "next": str(rows[-1].uuid) if more else None,
    }
    if after:
        return body
    bundles = TeamCABundle.objects.for_team(agent.team).order_by("pk").values_list("pem", flat=True)
    ranges = list(IPRange.objects.for_team(agent.team).filter(agent=agent, removed_at=None).order_by("pk"))
    names = watched_names(agent.team_id) if ranges else []
    body["ca_bundle"] = "\n".join(bundles)
    # The agent sweeps its ranges under one global limit too, at most this (and its own setting).
    body["sweep_rate"] = float(settings.KEYCHEST_DISCOVERY_RATE)
    body["ranges"] = [
        agentwire.RangeTarget(
            id=str(r.uuid),
            cidr=r.cidr,
            ports=list(r.ports),
            names=names,
            rate_per_second=r.rate,
            due=r.next_sweep_at is None or r.next_sweep_at <= now,
        ).as_dict()
        for r in ranges
    ]
    return body


# --- the protocol: results ----------------------------------------------------------------------
@dataclass
class ReportOutcome:
    """What became of a batch: targets stored, and items refused with why."""

    accepted: list[str] = field(default_factory=list)
    refused: list[dict[str, str]] = field(default_factory=list)
    summary: ScanSummary | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "accepted": self.accepted,
            "refused": self.refused,
            "findings": dict(self.summary.findings) if self.summary else {},
        }


def _observed(item: dict[str, Any], server: Server, previous_legacy: dict[str, list[str]]) -> Observed:
    resolution = agentwire.resolution_from_wire(item.get("resolution"), server.host)
    probes_data = item.get("probes") or []
    if not isinstance(probes_data, list) or len(probes_data) > agentwire.MAX_ADDRESSES:
        raise WireError(f"at most {agentwire.MAX_ADDRESSES} probes")
    probes = [agentwire.probe_from_wire(p, port=server.port) for p in probes_data]
    legacy_probed = bool(item.get("legacy_probed"))
    if not legacy_probed:
        for probe in probes:  # not probed this time: the last answer stands (as in our own scans)
            if probe.ok and not probe.legacy_versions and probe.address in previous_legacy:
                probe.legacy_versions = list(previous_legacy[probe.address])
    return Observed(
        resolution=resolution,
        probes=probes,
        resolved_now=resolution is not None,
        legacy_probed=legacy_probed,
        alternate_probed=bool(item.get("alternate_probed")),
    )


def agent_report(*, agent: Agent, results: Any, now: datetime | None = None) -> ReportOutcome:
    """Store a batch of observations for this agent's own servers; everything else is refused.

    Any verdict an agent adds (trusted, findings...) is not read: the server judges the chain."""
    now = now or timezone.now()
    outcome = ReportOutcome()
    if not isinstance(results, list) or len(results) > agentwire.MAX_RESULTS_PER_BATCH:
        raise AgentRefused(f"results must be a list of at most {agentwire.MAX_RESULTS_PER_BATCH} items")
    ids = [str(item.get("target", ""))[:40] for item in results if isinstance(item, dict)]
    mine = {str(s.uuid): s for s in agent_servers(agent).filter(uuid__in=_uuids(ids)).select_related("ca_bundle")}
    previous: dict[int, dict[str, list[str]]] = {}
    for sid, address, legacy in ScanResult.objects.filter(
        server__in=list(mine.values()), current=True, alternate=False, error_code=""
    ).values_list("server_id", "address", "legacy_tls"):
        previous.setdefault(sid, {})[address] = legacy
    servers: list[Server] = []
    observed: dict[int, Observed] = {}
    for item in results:
        target = str(item.get("target", ""))[:40] if isinstance(item, dict) else ""
        server = mine.get(target)
        if server is None:
            # Another team's server, or one not assigned to this agent: indistinguishable (404).
            outcome.refused.append({"target": target, "error": "not-found"})
            continue
        if server.pk in observed:
            outcome.refused.append({"target": target, "error": "duplicate"})
            continue
        try:
            observed[server.pk] = _observed(item, server, previous.get(server.pk, {}))
        except WireError as exc:
            outcome.refused.append({"target": target, "error": str(exc)[:200]})
            continue
        servers.append(server)
        outcome.accepted.append(target)
    outcome.summary = scan_store(servers, observed, now=now)
    return outcome


def _uuids(texts: list[str]) -> list[str]:
    out = []
    for text in texts:
        try:
            out.append(str(uuid.UUID(text)))
        except ValueError:
            continue
    return out


def agent_sweep_report(*, agent: Agent, data: Any, now: datetime | None = None) -> dict[str, int]:
    """Store a sweep of one of this agent's ranges (services outside the range are dropped): whole,
    or one part of it ({"sweep": id, "part": i, "parts": n}); see `discovery.services.sweep_part_store`."""
    now = now or timezone.now()
    if not isinstance(data, dict):
        raise AgentRefused("a sweep report is an object")
    ip_range = (
        IPRange.objects.for_team(agent.team)
        .filter(agent=agent, removed_at=None, uuid__in=_uuids([str(data.get("range", ""))[:40]]))
        .first()
    )
    if ip_range is None:
        raise AgentRefused("not-found")
    items = data.get("services") or []
    if not isinstance(items, list) or len(items) > sweep.MAX_RANGE_ADDRESSES * 4:
        raise AgentRefused("services must be a list")
    services = []
    try:
        for item in items:
            if not isinstance(item, dict) or not isinstance(item.get("port"), int):
                raise WireError("a service has an address, a port and a probe")
            probe = agentwire.probe_from_wire(item.get("probe"), port=item["port"])
            if not probe.ok:
                continue
            sni = item.get("sni") or ""
            protocol = item.get("protocol") or "tls"
            if not isinstance(sni, str) or not isinstance(protocol, str):
                raise WireError("sni and protocol are strings")
            services.append(sweep.Service(probe.address, probe.port, protocol[:10], sni[:253], probe))
    except WireError as exc:
        raise AgentRefused(str(exc)) from None
    seconds = data.get("seconds")
    took = float(seconds) if isinstance(seconds, int | float) and not isinstance(seconds, bool) else None
    if data.get("sweep") is None:  # the whole sweep in one report
        new, vanished = services_store(ip_range=ip_range, services=services, now=now, seconds=took)
        return {"services": len(services), "new": new, "vanished": vanished, "complete": 1}
    sweep_id, part, parts = data.get("sweep"), data.get("part"), data.get("parts")
    if not isinstance(sweep_id, str) or not SWEEP_ID.fullmatch(sweep_id):
        raise AgentRefused("sweep is the sweep's id (letters, digits, - and _; at most 40)")
    if not all(isinstance(n, int) and not isinstance(n, bool) for n in (part, parts)):
        raise AgentRefused("part and parts are whole numbers")
    assert isinstance(part, int) and isinstance(parts, int)
    try:
        outcome = sweep_part_store(
            ip_range=ip_range, sweep_id=sweep_id, part=part, parts=parts, services=services, now=now, seconds=took
        )
    except RangeRefused as exc:
        raise AgentRefused(str(exc)) from None
    return {
        "services": len(services),
        "new": outcome.new,
        "vanished": outcome.vanished,
        "complete": int(outcome.complete),
        "duplicate": int(outcome.duplicate),
    }


# --- health -------------------------------------------------------------------------------------
def agents_silent_check(*, now: datetime | None = None) -> int:
    """Raise `agent_silent` once per silence for agents not heard from for twice their cadence."""
    now = now or timezone.now()
    events: list[NewEvent] = []
    with transaction.atomic():
        candidates = Agent.objects.select_for_update(skip_locked=True).filter(
            revoked_at=None, enrolled_at__isnull=False, silent_since=None
        )
        for agent in candidates:
            if not agent.is_silent(now):
                continue
            seen = agent.last_contact_at or agent.enrolled_at
            assert seen is not None  # is_silent() says so
            agent.silent_since = now
            agent.save(update_fields=["silent_since"])
            events.append(
                NewEvent(
                    team_id=agent.team_id,
                    kind=EventKind.AGENT_SILENT,
                    subject=f"agent {agent.name}",
                    dedup_key=f"agent:{agent.uuid}:silent:{seen.isoformat()}",
                    severity=Severity.WARNING,
                    payload={"agent": str(agent.uuid), "name": agent.name, "last_contact": seen.isoformat()},
                    occurred_at=now,
                )
            )
        if events:
            events_record_bulk(events)
    return len(events)
