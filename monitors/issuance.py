"""Unexpected issuance: the CAA records of watched domains and each team's issuance policy.

CT matching (certificates/ingest.py) hands every chunk's matches to `unexpected_issuance_events`,
which judges them with kcproto/issuance.py against the team's `IssuancePolicy` and the CAA
record set last read for the watched domain (two queries per chunk that has matches, never one
per certificate). CAA sets are read from DNS by `caa_refresh`, which beat runs every ten minutes
for domains never read or read more than CAA_REFRESH ago.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from django.conf import settings
from django.db.models import Q
from django.utils import timezone

from certificates.matching import Match
from events.models import EventKind, Severity
from events.services import NewEvent
from kcproto import netguard
from kcproto.issuance import Caa, Policy, caa_value_domain, normalise_pin, unexpected_reasons
from monitors.models import IssuancePolicy, WatchedDomain

if TYPE_CHECKING:
    from keychest.accounts.models import Team

CAA_REFRESH = timedelta(hours=12)
CAA_BATCH = 500
CAA_BUDGET_SECONDS = 120.0
CRITICAL_FLAG = 128
DEFAULT_POLICY = Policy()


@dataclass(frozen=True)
class CaaLookup:
    """The relevant CAA set of a name: the closest non-empty one walking up the tree."""

    found: bool
    domain: str = ""
    issue: tuple[str, ...] = ()
    issuewild: tuple[str, ...] | None = None
    error: str = ""


def caa_lookup(name: str, *, nameservers: Sequence[tuple[str, int]] | None = None, timeout: float = 5.0) -> CaaLookup:
    """Read the CAA set that governs `name` (RFC 8659 section 3), bounded by `timeout` per query.

    A name without records defers to its parent; a DNS failure (timeout, SERVFAIL) answers with
    `error` and no conclusion, so the caller keeps what it knew."""
    import dns.exception
    import dns.resolver

    resolver = netguard.dns_resolver(nameservers, timeout)
    labels = name.rstrip(".").split(".")
    for start in range(len(labels)):
        candidate = ".".join(labels[start:])
        try:
            answer = resolver.resolve(candidate, "CAA", raise_on_no_answer=False)
        except dns.resolver.NXDOMAIN:
            continue
        except (dns.exception.DNSException, OSError, ValueError) as error:
            return CaaLookup(found=False, error=f"{candidate}: {type(error).__name__}"[:200])
        records = list(answer.rrset or ()) if answer.rrset is not None else []
        if not records:
            continue
        issue: list[str] = []
        issuewild: list[str] | None = None
        refuse_all = False
        for record in records:
            tag = record.tag.decode("ascii", "replace").lower()
            value = record.value.decode("utf-8", "replace")
            if tag == "issue":
                domain = caa_value_domain(value)
                if domain:
                    issue.append(domain)
            elif tag == "issuewild":
                issuewild = issuewild if issuewild is not None else []
                domain = caa_value_domain(value)
                if domain:
                    issuewild.append(domain)
            elif record.flags & CRITICAL_FLAG:
                refuse_all = True  # an unknown critical property: no CA may issue (RFC 8659 4.1)
        if refuse_all:
            return CaaLookup(found=True, domain=candidate, issue=(), issuewild=())
        return CaaLookup(
            found=True,
            domain=candidate,
            issue=tuple(sorted(set(issue))),
            issuewild=None if issuewild is None else tuple(sorted(set(issuewild))),
        )
    return CaaLookup(found=False)


def caa_refresh(*, now: datetime | None = None, limit: int = CAA_BATCH, budget: float = CAA_BUDGET_SECONDS) -> int:
    """Read CAA for watched domains never read or read over CAA_REFRESH ago; returns names read.

    One look-up per distinct name, however many teams watch it; the run stops after `budget`
    seconds (a resolver timing out on every name must not hold a worker), the rest wait for the
    next run."""
    now = now or timezone.now()
    stop_at = time.monotonic() + budget
    stale = Q(caa_checked_at=None) | Q(caa_checked_at__lt=now - CAA_REFRESH)
    names = list(
        WatchedDomain.objects.filter(stale, removed_at=None)
        .order_by("caa_checked_at", "domain")
        .values_list("domain", flat=True)
        .distinct()[: limit * 4]
    )
    names = list(dict.fromkeys(names))[:limit]
    nameservers = netguard.parse_nameservers(getattr(settings, "KEYCHEST_DNS_NAMESERVERS", []))
    timeout = settings.KEYCHEST_DNS_TIMEOUT
    done = 0
    for name in names:
        if time.monotonic() >= stop_at:
            break
        done += 1
        found = caa_lookup(name, nameservers=nameservers or None, timeout=timeout)
        rows = WatchedDomain.objects.filter(domain=name, removed_at=None)
        if found.error:
            rows.update(caa_checked_at=now, caa_error=found.error)
            continue
        rows.update(
            caa_found=found.found,
            caa_domain=found.domain,
            caa_issue=list(found.issue),
            caa_issuewild=None if found.issuewild is None else list(found.issuewild),
            caa_checked_at=now,
            caa_error="",
        )
    return done


def _caa_of(row: WatchedDomain) -> Caa:
    return Caa(
        domain=row.caa_domain or row.domain,
        found=bool(row.caa_found),
        issue=frozenset(row.caa_issue or ()),
        issuewild=None if row.caa_issuewild is None else frozenset(row.caa_issuewild),
    )


def policy_of(row: IssuancePolicy | None) -> Policy:
    if row is None:
        return DEFAULT_POLICY
    return Policy(
        allowed_issuers=frozenset(row.allowed_issuers), known_keys=frozenset(row.known_keys), check_caa=row.check_caa
    )


def unexpected_issuance_events(matches: Sequence[Match]) -> list[NewEvent]:
    """An `unexpected_issuance` event per (team, issuance) that breaks the team's expectations."""
    if not matches:
        return []
    policies = {p.team_id: p for p in IssuancePolicy.objects.filter(team_id__in={m.team_id for m in matches})}
    watch_ids = {watch_id for m in matches for watch_id in m.names_by_watch}
    caa_by_watch = {
        row.pk: _caa_of(row)
        for row in WatchedDomain.objects.filter(pk__in=watch_ids, caa_found=True).only(
            "id", "domain", "caa_found", "caa_domain", "caa_issue", "caa_issuewild"
        )
    }
    events: list[NewEvent] = []
    seen: set[tuple[int, str]] = set()
    for m in matches:
        cert = m.certificate
        key = (m.team_id, cert.issuance_key)
        if key in seen:  # a precertificate and its certificate in one chunk: judged once
            continue
        seen.add(key)
        policy = policy_of(policies.get(m.team_id))
        if not policy.active:
            continue
        caa = [caa_by_watch[w] for w in m.names_by_watch if w in caa_by_watch]
        names = m.names
        reasons = unexpected_reasons(issuer=cert.issuer, names=names, der=cert.der, policy=policy, caa=caa)
        if not reasons:
            continue
        events.append(
            NewEvent(
                team_id=m.team_id,
                kind=EventKind.UNEXPECTED_ISSUANCE,
                subject=names[0] if len(names) == 1 else f"{names[0]} (+{len(names) - 1})",
                dedup_key=f"ct:unexpected:{cert.issuance_key}",
                severity=Severity.CRITICAL,
                payload={
                    "sha256": cert.sha256,
                    "issuance_key": cert.issuance_key,
                    "names": names[:50],
                    "issuer": cert.issuer,
                    "serial": cert.serial,
                    "not_before": cert.not_before.isoformat(),
                    "not_after": cert.not_after.isoformat(),
                    "precertificate": cert.is_precertificate,
                    "reasons": reasons,
                },
            )
        )
    return events


MAX_POLICY_ENTRIES = 100


def issuance_policy_set(
    *, team: Team, allowed_issuers: Sequence[str], known_keys: Sequence[str], check_caa: bool
) -> IssuancePolicy:
    """Create or replace the team's policy. Raises ValueError naming the first bad entry."""

    issuers = list(dict.fromkeys(e.strip().lower() for e in allowed_issuers if e.strip()))
    if any(len(entry) > 200 for entry in issuers):
        raise ValueError("an allowed CA entry is longer than 200 characters")
    pins: list[str] = []
    for entry in known_keys:
        if entry.strip():
            try:
                pins.append(normalise_pin(entry))
            except ValueError as error:
                raise ValueError(f"{entry.strip()[:80]!r}: {error}") from None
    pins = list(dict.fromkeys(pins))
    if len(issuers) > MAX_POLICY_ENTRIES or len(pins) > MAX_POLICY_ENTRIES:
        raise ValueError(f"at most {MAX_POLICY_ENTRIES} allowed CAs and {MAX_POLICY_ENTRIES} known keys")
    policy, _ = IssuancePolicy.objects.update_or_create(
        team=team, defaults={"allowed_issuers": issuers, "known_keys": pins, "check_caa": check_caa}
    )
    return policy
