"""Which certificates of the global store a team can see (the v1 API and its CSV export).

A team sees a certificate when one of its servers presented it, when it uploaded it, or when it
was read from a CT log and names something under one of the team's watched domains
(monitors/visibility.py). Another team's scanned or uploaded certificate is not there at all.
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from api.models import UploadedCertificate
from certificates.models import Certificate
from keychest.accounts.models import Team
from monitors.visibility import logged_under_watched_domains, scanned_by


def team_certificates(team: Team) -> QuerySet[Certificate]:
    """Every certificate the team can see, annotated with `from_scan` and `from_upload`
    (see `certificate_sources`)."""
    scan = scanned_by(team).filter(leaf_sha256=OuterRef("sha256"))
    upload = UploadedCertificate.objects.filter(team=team, certificate=OuterRef("pk"))
    qs = Certificate.objects.annotate(from_scan=Exists(scan), from_upload=Exists(upload))
    visible = Q(from_scan=True) | Q(from_upload=True)
    logged = logged_under_watched_domains(team)
    if logged is not None:
        visible |= logged
    return qs.filter(visible)


def certificate_sources(cert: Certificate) -> list[str]:
    """Where the certificate was seen, truly: the team's scans, its uploads, and "ct" only when
    it was read from a CT log (not because it names a watched domain)."""
    found = [k for k in ("scan", "upload") if getattr(cert, f"from_{k}", False)]
    return [*found, "ct"] if cert.ct_logged else found


def one_per_issuance(qs: QuerySet[Certificate]) -> QuerySet[Certificate]:
    """A precertificate left out when its final certificate is in `qs` too (what the team sees),
    not merely somewhere in the store: another team's final certificate must not hide it."""
    final = Certificate.objects.filter(
        id__in=qs.values("id"), issuance_key=OuterRef("issuance_key"), is_precertificate=False
    )
    return qs.exclude(Q(is_precertificate=True) & Exists(final))
