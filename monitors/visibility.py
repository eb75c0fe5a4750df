"""Which parts of the global certificate store a team may see (issue 22 item 2).

The store is one table for everybody, but only its CT part is public knowledge: a certificate
read from a CT log (`Certificate.ct_logged`) may be shown to any team watching a domain it
names. A certificate a team's scan presented or the team uploaded belongs to that team alone:
no other team sees it, its names, or hosts made from them, whatever domains it watches.

The pages and the API build their querysets from these filters (api/selectors.py,
dashboard/certificate_pages.py, dashboard/domain_pages.py), and host discovery and auto-watch
(monitors/domains.py) use them for names.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

from django.db.models import Exists, OuterRef, Q, QuerySet

from certificates.models import CertificateName, CertificateSource, SourceKind
from certificates.services import upload_source_ref
from kcproto.names import reversed_name
from monitors.models import DiscoveredHost, ScanResult, WatchedDomain

if TYPE_CHECKING:
    from keychest.accounts.models import Team


def scanned_by(team: Team) -> QuerySet[ScanResult]:
    """The team's scan results that presented a certificate (`leaf_sha256`)."""
    return ScanResult.objects.filter(team=team).exclude(leaf_sha256="")


def logged_under_watched_domains(team: Team) -> Q | None:
    """A filter on Certificate: read from a CT log and naming something under one of the team's
    watched domains. None when the team watches none."""
    names = WatchedDomain.names_query(team)
    if names is None:
        return None
    return Q(ct_logged=True) & Q(Exists(CertificateName.objects.filter(names, certificate=OuterRef("pk"))))


def names_the_team_may_see(team: Team) -> Q:
    """A filter on CertificateName: names of certificates read from a CT log, or presented by the
    team's own scans, or uploaded by the team. Correlated by certificate, so it costs an index
    probe per name row: apply it after narrowing the names (a domain, a list of hosts)."""
    scanned = scanned_by(team).filter(leaf_sha256=OuterRef("certificate__sha256"))
    uploaded = CertificateSource.objects.filter(
        certificate=OuterRef("certificate_id"), kind=SourceKind.UPLOAD, ref=upload_source_ref(team.uuid)
    )
    return Q(certificate__ct_logged=True) | Exists(scanned) | Exists(uploaded)


def visible_names(team: Team, names: Iterable[str]) -> set[str]:
    """Those of `names` that name a certificate the team may see (one query, by the indexed
    reversed name)."""
    wanted = {n for n in names if n}
    if not wanted:
        return set()
    rows = CertificateName.objects.filter(reversed_name__in=[reversed_name(n) for n in wanted]).filter(
        names_the_team_may_see(team)
    )
    return set(rows.values_list("name", flat=True).distinct()) & wanted


def visible_hosts(watched: WatchedDomain) -> QuerySet[DiscoveredHost]:
    """The domain's discovered hosts that come from certificates its team may see.

    Hosts recorded before provenance was kept may come from another team's scans or uploads:
    they stay stored (history is data) but are neither shown nor watched."""
    hosts = DiscoveredHost.objects.filter(watched_domain=watched)
    shown = visible_names(watched.team, hosts.values_list("name", flat=True))
    return hosts.filter(name__in=sorted(shown))


def visible_host_counts(team: Team, domains: Iterable[WatchedDomain]) -> dict[int, tuple[int, int]]:
    """Per watched domain of the team (by id): (visible discovered hosts, of which not watched
    yet). Two queries for all of them."""
    rows = list(
        DiscoveredHost.objects.filter(team=team, watched_domain__in=list(domains)).values_list(
            "watched_domain_id", "name", "watched_at"
        )
    )
    shown = visible_names(team, (name for _, name, _ in rows))
    counts: dict[int, tuple[int, int]] = {}
    for domain_id, name, watched_at in rows:
        if name in shown:
            hosts, unwatched = counts.get(domain_id, (0, 0))
            counts[domain_id] = (hosts + 1, unwatched + (watched_at is None))
    return counts
