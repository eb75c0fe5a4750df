"""Which certificates of the global store a team can see (the v1 API and its CSV export).

A team sees a certificate when one of its servers presented it, when it uploaded it, or when it
names something under one of the team's watched domains (CT).
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet

from api.models import UploadedCertificate
from certificates.models import Certificate, CertificateName
from keychest.accounts.models import Team
from monitors.models import ScanResult, WatchedDomain


def team_certificates(team: Team) -> QuerySet[Certificate]:
    """Every certificate the team can see, annotated with `from_scan`, `from_upload`, `from_ct`
    (see `certificate_sources`)."""
    scan = ScanResult.objects.filter(team=team, leaf_sha256=OuterRef("sha256"))
    upload = UploadedCertificate.objects.filter(team=team, certificate=OuterRef("pk"))
    names_q = WatchedDomain.names_query(team)
    qs = Certificate.objects.annotate(from_scan=Exists(scan), from_upload=Exists(upload))
    visible = Q(from_scan=True) | Q(from_upload=True)
    if names_q is not None:
        ct = CertificateName.objects.filter(names_q, certificate=OuterRef("pk"))
        qs = qs.annotate(from_ct=Exists(ct))
        visible |= Q(from_ct=True)
    return qs.filter(visible)


def certificate_sources(cert: Certificate) -> list[str]:
    """How the team came to see it (annotations of `team_certificates`)."""
    return [k for k in ("scan", "upload", "ct") if getattr(cert, f"from_{k}", False)]
