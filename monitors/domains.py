"""Watched domains and the hosts discovered under them from Certificate Transparency.

A team watches `example.com` (itself and, by default, every sub-domain). CT ingestion matches
every new certificate against all watched domains (certificates/matching.py) through the
provider below, which also records the host names it finds under them ("discovered hosts") and,
when the team asked for it, starts watching those hosts as servers.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from django.db import transaction
from django.utils import timezone

from certificates.matching import Match, Watch, watchers_changed
from certificates.models import CertificateName
from events.services import NewEvent, events_record_bulk
from kcproto.names import InvalidName, ip_literal, is_public_suffix, normalise_name, reversed_name
from kcproto.targets import InvalidTarget, domain_from_input
from monitors.issuance import unexpected_issuance_events
from monitors.models import DiscoveredHost, WatchedDomain
from monitors.services import AlreadyWatched, server_enrol
from monitors.visibility import names_the_team_may_see, visible_names

if TYPE_CHECKING:
    from keychest.accounts.models import Team, User

HOST_DISCOVERED = "host_discovered"
# A domain with more names than this in the table gets its history shown, but not every name
# turned into a discovered-host row at once (the rest arrive as new certificates are seen).
BACKFILL_MAX_HOSTS = 5000


def domain_watch(
    *,
    team: Team,
    domain: str,
    include_subdomains: bool = True,
    auto_watch: bool = False,
    added_by: User | None = None,
) -> WatchedDomain:
    """Watch `domain` for `team` (idempotent); its known sub-domains are discovered from the table at once.

    Raises kcproto.names.InvalidName for a malformed domain (wildcards are refused: watch
    the parent instead) and for a public suffix ("com", "co.uk": everybody's names are under it).
    """
    name = normalise_name(domain_from_input(domain))
    if name.startswith("*."):
        raise InvalidName("watch the domain itself; its sub-domains are included")
    if ip_literal(name) is not None:
        raise InvalidName("watch an IP address as a server, not as a domain")
    if is_public_suffix(name):
        raise InvalidName(
            f"{name} is a public suffix: anyone can register names under it, so it cannot be watched."
            " Watch your own domain instead, e.g. example.{name}"
        )
    with transaction.atomic():
        watched = WatchedDomain.objects.for_team(team).filter(domain=name, removed_at=None).first()
        if watched is None:
            watched = WatchedDomain.objects.create(
                team=team,
                domain=name,
                include_subdomains=include_subdomains,
                auto_watch=auto_watch,
                added_by=added_by,
            )
        else:
            WatchedDomain.objects.filter(pk=watched.pk).update(
                include_subdomains=include_subdomains, auto_watch=auto_watch
            )
            watched.refresh_from_db()
        domain_backfill(watched_domain=watched)
        transaction.on_commit(watchers_changed)
    return watched


def domain_unwatch(*, watched_domain: WatchedDomain) -> WatchedDomain:
    """Stop watching; the discovered hosts and the certificate history stay."""
    WatchedDomain.objects.filter(pk=watched_domain.pk, removed_at=None).update(removed_at=timezone.now())
    watched_domain.refresh_from_db()
    transaction.on_commit(watchers_changed)
    return watched_domain


def _host_names_under(watched: WatchedDomain) -> list[str]:
    """Host names (not wildcards, not IPs) under the watched domain in the global name table, of
    certificates the team may see: read from CT logs, or its own scans and uploads."""
    rev = reversed_name(watched.domain)
    exact = CertificateName.objects.filter(reversed_name=rev, is_wildcard=False)
    if watched.include_subdomains:
        exact = exact | CertificateName.objects.filter(reversed_name__startswith=rev + ".", is_wildcard=False)
    exact = exact.filter(names_the_team_may_see(watched.team))
    return list(exact.values_list("name", flat=True).distinct().order_by("name")[:BACKFILL_MAX_HOSTS])


def domain_backfill(*, watched_domain: WatchedDomain, now: datetime | None = None) -> int:
    """Record as discovered every host the table already knows under the domain; returns how many are new."""
    now = now or timezone.now()
    return hosts_record(watched_domain=watched_domain, names=_host_names_under(watched_domain), seen_at=now)


def hosts_record(
    *, watched_domain: WatchedDomain, names: Iterable[str], seen_at: datetime, notify: bool = False
) -> int:
    """Upsert discovered hosts under a watched domain; auto-watch the new ones if asked. Returns new hosts.

    With `notify` (new certificates from CT, not the backfill of a freshly added domain), each new
    host is also a "host_discovered" event for the team.
    """
    return hosts_record_bulk(names_by_domain={watched_domain: names}, seen_at=seen_at, notify=notify)


def hosts_record_bulk(
    *, names_by_domain: Mapping[WatchedDomain, Iterable[str]], seen_at: datetime, notify: bool = False
) -> int:
    """`hosts_record` for many watched domains at once: a handful of queries whatever their number.

    CT ingestion calls this once per chunk with every match of the chunk. Returns new hosts.
    """
    wanted: dict[WatchedDomain, list[str]] = {}
    for wd, names in names_by_domain.items():
        hosts = sorted({n for n in names if not n.startswith("*.") and ip_literal(n) is None})
        if hosts:
            wanted[wd] = hosts
    if not wanted:
        return 0
    by_pk = {wd.pk: wd for wd in wanted}
    existing: dict[tuple[int, str], int] = {
        (wd_id, name): pk
        for pk, wd_id, name in DiscoveredHost.objects.filter(
            watched_domain_id__in=list(by_pk), name__in={n for names in wanted.values() for n in names}
        ).values_list("pk", "watched_domain_id", "name")
    }
    seen = [pk for wd, names in wanted.items() for n in names if (pk := existing.get((wd.pk, n))) is not None]
    if seen:
        DiscoveredHost.objects.filter(pk__in=seen).update(last_seen_at=seen_at)
    new = {wd: [n for n in names if (wd.pk, n) not in existing] for wd, names in wanted.items()}
    new = {wd: names for wd, names in new.items() if names}
    if not new:
        return 0
    DiscoveredHost.objects.bulk_create(
        [
            DiscoveredHost(team_id=wd.team_id, watched_domain=wd, name=n, first_seen_at=seen_at, last_seen_at=seen_at)
            for wd, names in new.items()
            for n in names
        ],
        ignore_conflicts=True,
    )
    if notify:
        events_record_bulk(
            NewEvent(
                team_id=wd.team_id,
                kind=HOST_DISCOVERED,
                subject=n,
                dedup_key=f"ct:host:{wd.pk}:{n}",
                payload={"name": n, "watched_domain": wd.domain},
                occurred_at=seen_at,
            )
            for wd, names in new.items()
            for n in names
        )
    for wd, names in new.items():
        if wd.auto_watch:
            hosts_auto_watch(watched_domain=wd, names=names)
    return sum(len(names) for names in new.values())


def hosts_auto_watch(*, watched_domain: WatchedDomain, names: Sequence[str]) -> int:
    """Enrol new hosts as watched servers (port 443); a host already watched is simply marked.

    Only hosts named by a certificate the team may see (read from CT, or its own scans and
    uploads): another team's data never becomes this team's servers."""
    enrolled: list[str] = []
    allowed = visible_names(watched_domain.team, names)
    for name in (n for n in names if n in allowed):
        try:
            with transaction.atomic():
                server_enrol(team=watched_domain.team, host=name)
            enrolled.append(name)
        except AlreadyWatched:
            enrolled.append(name)
        except InvalidTarget:
            continue
    if enrolled:
        DiscoveredHost.objects.filter(watched_domain=watched_domain, name__in=enrolled, watched_at=None).update(
            watched_at=timezone.now()
        )
    return len(enrolled)


class WatchedDomainProvider:
    """The "who watches this name" provider monitors registers with certificates (see apps.py)."""

    def watches(self) -> Iterable[Watch]:
        rows = WatchedDomain.objects.filter(removed_at=None).values_list(
            "id", "team_id", "domain", "include_subdomains"
        )
        for watch_id, team_id, domain, subs in rows.iterator(chunk_size=5000):
            if is_public_suffix(domain):  # watched before they were refused: match nobody's names
                continue
            yield Watch(watch_id=watch_id, team_id=team_id, domain=domain, include_subdomains=subs)

    def hosts_discovered(self, matches: Sequence[Match], *, seen_at: datetime) -> None:
        names_by_watch: dict[int, set[str]] = {}
        for m in matches:
            for watch_id, names in m.names_by_watch.items():
                names_by_watch.setdefault(watch_id, set()).update(names)
        if not names_by_watch:
            return
        watched = WatchedDomain.objects.filter(pk__in=list(names_by_watch), removed_at=None).select_related("team")
        hosts_record_bulk(names_by_domain={wd: names_by_watch[wd.pk] for wd in watched}, seen_at=seen_at, notify=True)

    def issuance_events(self, matches: Sequence[Match]) -> list[NewEvent]:

        return unexpected_issuance_events(matches)
