"""The team's certificate pages: the inventory (filters: issuer, expiry window, source, deployed)
and one certificate (chain, names, PEM download, where it is deployed).

Certificates are global facts, but only those read from a CT log are public: a team sees one
when its servers present it, it uploaded it, or it was read from a CT log and names one of the
team's watched domains (monitors/visibility.py). Anything else is 404.

These are views, the layer above the apps (like api/): they live with the dashboard so that
certificates/ itself never imports monitors/ (docs/architecture.md).
"""

from __future__ import annotations

import base64
from datetime import timedelta
from typing import Any

from django.core.paginator import Paginator
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone

from certificates.models import Certificate, CertificateName, RenewalInfo, UploadedCertificate
from keychest.accounts.decorators import team_required
from keychest.accounts.types import TeamRequest
from monitors.models import ScanResult
from monitors.visibility import logged_under_watched_domains, scanned_by

PAGE_SIZE = 50
WINDOWS = (
    ("", "Any expiry"),
    ("expired", "Expired"),
    ("7", "Within 7 days"),
    ("28", "Within 28 days"),
    ("90", "Within 90 days"),
    ("later", "Later than 90 days"),
)
SOURCES = (("", "Any source"), ("scan", "Seen on a server"), ("ct", "From CT logs"), ("upload", "Uploaded"))
DEPLOYED = (("", "Deployed or not"), ("yes", "Deployed now"), ("no", "Not deployed"))


def team_certificates(team: Any) -> QuerySet[Certificate]:
    """Every certificate the team may see, one row per issuance, with source and deployment flags.

    Seen means: presented by the team's servers, uploaded by the team, or read from a CT log and
    naming one of its watched domains (monitors/visibility.py)."""
    scanned = scanned_by(team)
    deployed = scanned.filter(current=True, server__removed_at=None)
    visible = Q(sha256__in=scanned.values("leaf_sha256"))
    uploads = UploadedCertificate.objects.filter(team=team)
    visible |= Q(id__in=uploads.values("certificate_id"))
    logged = logged_under_watched_domains(team)
    if logged is not None:
        visible |= logged
    # A precertificate hides behind its final certificate only when the team may see that one.
    final = Certificate.objects.filter(visible, issuance_key=OuterRef("issuance_key"), is_precertificate=False)
    qs = (
        Certificate.objects.filter(visible, is_ca=False)
        .exclude(Q(is_precertificate=True) & Exists(final))
        .annotate(
            from_scan=Exists(scanned.filter(leaf_sha256=OuterRef("sha256"))),
            deployed=Exists(deployed.filter(leaf_sha256=OuterRef("sha256"))),
            from_upload=Exists(uploads.filter(certificate=OuterRef("pk"))),
        )
    )
    return qs


def _filter(qs: QuerySet[Certificate], params: dict[str, str], has_uploads: bool) -> QuerySet[Certificate]:
    now = timezone.now()
    if params["issuer"]:
        qs = qs.filter(issuer__icontains=params["issuer"])
    if params["q"]:
        qs = qs.filter(Q(subject__icontains=params["q"]) | Q(names__name__icontains=params["q"].lower())).distinct()
    window = params["window"]
    if window == "expired":
        qs = qs.filter(not_after__lte=now)
    elif window in ("7", "28", "90"):
        qs = qs.filter(not_after__gt=now, not_after__lte=now + timedelta(days=int(window)))
    elif window == "later":
        qs = qs.filter(not_after__gt=now + timedelta(days=90))
    source = params["source"]
    if source == "scan":
        qs = qs.filter(from_scan=True)  # type: ignore[misc]  # an annotation django-stubs cannot see
    elif source == "ct":
        qs = qs.filter(ct_logged=True)
    elif source == "upload":
        qs = qs.filter(from_upload=True) if has_uploads else qs.none()  # type: ignore[misc]  # annotation
    if params["deployed"] == "yes":
        qs = qs.filter(deployed=True)  # type: ignore[misc]  # annotation
    elif params["deployed"] == "no":
        qs = qs.filter(deployed=False)  # type: ignore[misc]  # annotation
    return qs


def sources_of(cert: Certificate) -> list[str]:
    """Where it was truly seen: "ct" only when read from a CT log."""
    return [
        name
        for name in ("scan", "ct", "upload")
        if getattr(cert, f"from_{name}", False) or (name == "ct" and cert.ct_logged)
    ]


@team_required()
def certificate_list(request: TeamRequest) -> HttpResponse:
    team = request.team
    params = {key: request.GET.get(key, "").strip()[:200] for key in ("q", "issuer", "window", "source", "deployed")}
    qs = team_certificates(team)
    qs = _filter(qs, params, "from_upload" in qs.query.annotations).order_by("not_after", "id")
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    certificates = list(page.object_list)
    names: dict[int, list[str]] = {}
    for cert_id, name in (
        CertificateName.objects.filter(certificate__in=certificates)
        .order_by("name")
        .values_list("certificate_id", "name")
    ):
        names.setdefault(cert_id, []).append(name)
    for cert in certificates:
        cert.name_list = names.get(cert.pk, [])  # type: ignore[attr-defined]
        cert.source_list = sources_of(cert)  # type: ignore[attr-defined]
    return render(
        request,
        "dashboard/certificates/list.html",
        {
            "team": team,
            "page_obj": page,
            "certificates": certificates,
            "params": params,
            "windows": WINDOWS,
            "sources": SOURCES,
            "deployed_choices": DEPLOYED,
            "now": timezone.now(),
        },
    )


def _visible_or_404(team: Any, sha256: str) -> Certificate:
    cert = team_certificates(team).filter(sha256=sha256.lower()).first()
    if cert is None:
        raise Http404("No such certificate")
    return cert


def _visible_for(team: Any, prefix: str) -> Certificate | None:
    """The team-visible certificate a full or shortened fingerprint names, or None. A
    precertificate the list shows as its final certificate resolves to that certificate; a
    shortened fingerprint that fits two certificates names none."""
    visible = team_certificates(team)
    found = list(visible.filter(sha256__startswith=prefix.lower()).order_by("sha256")[:2])
    if len(found) == 1:
        return found[0]
    if found:
        return None
    precerts = list(
        Certificate.objects.filter(sha256__startswith=prefix.lower(), is_precertificate=True).values_list(
            "issuance_key", flat=True
        )[:2]
    )
    if len(precerts) == 1 and precerts[0]:
        return visible.filter(issuance_key=precerts[0], is_precertificate=False).first()
    if len(prefix) == 64 and scanned_by(team).filter(chain_sha256__contains=[prefix.lower()]).exists():
        # An intermediate or root the team's servers present: shown with the chain it is in.
        return Certificate.objects.filter(sha256=prefix.lower()).first()
    return None


@team_required()
def certificate_by_prefix(request: TeamRequest, prefix: str) -> HttpResponse:
    """`/certificates/2ce4fbcc420a/`: the fingerprint as a finding quotes it leads to the page."""
    cert = _visible_for(request.team, prefix)
    if cert is None:
        raise Http404("No such certificate")
    return redirect("certificate_detail", sha256=cert.sha256)


@team_required()
def certificate_detail(request: TeamRequest, sha256: str) -> HttpResponse:
    team = request.team
    cert = team_certificates(team).filter(sha256=sha256.lower()).first()
    if cert is None:
        # A precertificate the team sees as its final certificate, or a CA of a served chain.
        cert = _visible_for(team, sha256)
        if cert is None:
            raise Http404("No such certificate")
        if cert.sha256 != sha256.lower():
            return redirect("certificate_detail", sha256=cert.sha256)
    results = list(
        ScanResult.objects.for_team(team)
        .filter(leaf_sha256=cert.sha256, server__removed_at=None)
        .select_related("server")
        .order_by("-current", "server__host", "address", "-first_seen")[:200]
    )
    chain_shas: list[str] = next((r.chain_sha256 for r in results if r.chain_sha256), [])
    chain_rows = {c.sha256: c for c in Certificate.objects.filter(sha256__in=chain_shas)}
    chain = [(sha, chain_rows.get(sha)) for sha in chain_shas]
    now = timezone.now()
    return render(
        request,
        "dashboard/certificates/detail.html",
        {
            "team": team,
            "cert": cert,
            "names": list(cert.names.order_by("name").values_list("name", flat=True)[:500]),
            "deployed_on": [r for r in results if r.current],
            "history": [r for r in results if not r.current],
            "chain": chain,
            "sources": sources_of(cert),
            "now": now,
            "days_left": cert.days_left(now),
            "renewal_due": cert.renewal_due(now),
            "renewal_overdue": cert.renewal_overdue(now),
            "has_pem": bool(cert.der) and not cert.thinned,
            "ari": RenewalInfo.objects.filter(certificate=cert).first(),
        },
    )


def pem_of(der: bytes | memoryview) -> str:
    body = base64.encodebytes(bytes(der)).decode().replace("\n", "")
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return "-----BEGIN CERTIFICATE-----\n" + "\n".join(lines) + "\n-----END CERTIFICATE-----\n"


@team_required()
def certificate_pem(request: TeamRequest, sha256: str) -> HttpResponse:
    cert = _visible_or_404(request.team, sha256)
    if not cert.der or cert.thinned:
        raise Http404("The DER of this expired certificate is no longer kept")
    response = HttpResponse(pem_of(cert.der), content_type="application/x-pem-file")
    response["Content-Disposition"] = f'attachment; filename="{cert.sha256[:16]}.pem"'
    return response
