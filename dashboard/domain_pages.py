"""The team's domain pages: watched domains, the CT history of each (one row per issuance, a
precertificate and its certificate merged), and the hosts discovered under it with "watch" and
auto-watch. Writes go through monitors/domains.py and monitors/services.py.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import BooleanField, Exists, OuterRef, Q, QuerySet
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from certificates.models import Certificate, CertificateName
from kcproto.names import InvalidName, reversed_name
from kcproto.targets import InvalidTarget
from keychest.accounts.decorators import team_required
from keychest.accounts.models import Role
from keychest.accounts.types import TeamRequest
from keychest.tenancy import get_for_team_or_404
from monitors import services
from monitors.domains import domain_unwatch, domain_watch, hosts_auto_watch
from monitors.models import DiscoveredHost, Server, WatchedDomain
from monitors.registrations import registered_domain_of, registrations_for_names
from monitors.visibility import names_the_team_may_see, visible_host_counts, visible_hosts

PAGE_SIZE = 50


class WatchDomainForm(forms.Form):
    domain = forms.CharField(max_length=253, help_text="e.g. example.com — the name and every sub-domain")
    auto_watch = forms.BooleanField(required=False, label="Watch new hosts as servers automatically")


def _names_of(watched: WatchedDomain) -> Q:
    rev = reversed_name(watched.domain)
    query = Q(reversed_name=rev)
    if watched.include_subdomains:
        query |= Q(reversed_name__startswith=rev + ".")
    return query


def domain_issuances(watched: WatchedDomain) -> QuerySet[Certificate]:
    """The domain's certificate history the team may see, one row per issuance (the final
    certificate when it is known, else the precertificate): everything read from CT logs, and the
    team's own scanned and uploaded certificates. `has_precert` / `has_final` say which of the two
    were read from a CT log ("logged as"); neither: the team's own, not seen in CT."""
    names = CertificateName.objects.filter(_names_of(watched)).filter(names_the_team_may_see(watched.team))
    ids = names.values("certificate_id")
    same = {"issuance_key": OuterRef("issuance_key")}
    shown_final = Certificate.objects.filter(id__in=ids, is_precertificate=False, **same)
    logged_final = Certificate.objects.filter(is_precertificate=False, ct_logged=True, **same)
    logged_precert = Certificate.objects.filter(is_precertificate=True, ct_logged=True, **same)
    return (
        Certificate.objects.filter(id__in=ids, is_ca=False)
        .exclude(Q(is_precertificate=True) & Exists(shown_final))
        .annotate(
            has_final=Exists(logged_final, output_field=BooleanField()),
            has_precert=Exists(logged_precert, output_field=BooleanField()),
        )
    )


@team_required()
def domain_list(request: TeamRequest) -> HttpResponse:
    team = request.team
    domains = list(WatchedDomain.objects.for_team(team).filter(removed_at=None).order_by("domain", "id"))
    counts = visible_host_counts(team, domains)
    for d in domains:
        d.hosts, d.unwatched = counts.get(d.pk, (0, 0))  # type: ignore[attr-defined]
    now = timezone.now()
    registrations = registrations_for_names({d.domain for d in domains})
    for d in domains:
        d.registration = registrations.get(d.domain)  # type: ignore[attr-defined]
        d.registration_level = d.registration.level(now) if d.registration else "unknown"  # type: ignore[attr-defined]
    return render(
        request,
        "dashboard/domains/list.html",
        {
            "team": team,
            "domains": domains,
            "form": WatchDomainForm(),
            "can_edit": request.membership.has_role(Role.MEMBER),
        },
    )


@team_required(Role.MEMBER)
@require_POST
def domain_add(request: TeamRequest) -> HttpResponse:
    form = WatchDomainForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter a domain name, e.g. example.com.")
        return redirect("domain_list")
    try:
        watched = domain_watch(
            team=request.team,
            domain=form.cleaned_data["domain"],
            auto_watch=form.cleaned_data["auto_watch"],
            added_by=request.user,
        )
    except InvalidName as error:
        messages.error(request, f"Not watched: {error}")
        return redirect("domain_list")
    typed = form.cleaned_data["domain"].strip()
    read_as = f" (read from “{typed[:100]}”)" if typed.lower().rstrip(".") != watched.domain else ""
    messages.success(request, f"Watching {watched.domain}{read_as} in Certificate Transparency; its history is below.")
    return redirect("domain_detail", domain_id=watched.uuid)


def _watched(request: TeamRequest, domain_id: Any) -> WatchedDomain:
    return get_for_team_or_404(WatchedDomain.objects.filter(removed_at=None), request.team, domain_id)


@team_required()
def domain_detail(request: TeamRequest, domain_id: Any) -> HttpResponse:
    team = request.team
    watched = _watched(request, domain_id)
    tab = "hosts" if request.GET.get("tab") == "hosts" else "history"
    hosts = visible_hosts(watched).order_by("name", "id")
    watched_hosts = set(
        Server.objects.for_team(team)
        .filter(removed_at=None, host__in=hosts.values("name"))
        .values_list("host", flat=True)
    )
    if tab == "history":
        page = Paginator(domain_issuances(watched).order_by("-not_before", "-id"), PAGE_SIZE).get_page(
            request.GET.get("page")
        )
        rows = list(page.object_list)
        names: dict[int, list[str]] = {}
        for cert_id, name in (
            CertificateName.objects.filter(certificate__in=rows).order_by("name").values_list("certificate_id", "name")
        ):
            names.setdefault(cert_id, []).append(name)
        for cert in rows:
            cert.name_list = names.get(cert.pk, [])  # type: ignore[attr-defined]
    else:
        page = Paginator(hosts, PAGE_SIZE).get_page(request.GET.get("page"))  # type: ignore[assignment]
        rows = list(page.object_list)
        for host in rows:
            host.is_watched = host.name in watched_hosts  # type: ignore[attr-defined]
    registration = registrations_for_names([watched.domain]).get(watched.domain)
    return render(
        request,
        "dashboard/domains/detail.html",
        {
            "team": team,
            "watched": watched,
            "registered_domain": registered_domain_of(watched.domain),
            "registration": registration,
            "registration_level": registration.level(timezone.now()) if registration else "unknown",
            "tab": tab,
            "page_obj": page,
            "rows": rows,
            "host_count": hosts.count(),
            "can_edit": request.membership.has_role(Role.MEMBER),
        },
    )


@team_required(Role.MEMBER)
@require_POST
def domain_remove(request: TeamRequest, domain_id: Any) -> HttpResponse:
    watched = _watched(request, domain_id)
    domain_unwatch(watched_domain=watched)
    messages.success(request, f"{watched.domain} is no longer watched (its history is kept).")
    return redirect("domain_list")


@team_required(Role.MEMBER)
@require_POST
def domain_auto_watch(request: TeamRequest, domain_id: Any) -> HttpResponse:
    watched = _watched(request, domain_id)
    enable = request.POST.get("enable") == "1"
    watched = domain_watch(
        team=watched.team, domain=watched.domain, include_subdomains=watched.include_subdomains, auto_watch=enable
    )
    if enable:
        pending = list(visible_hosts(watched).filter(watched_at=None).values_list("name", flat=True))
        added = hosts_auto_watch(watched_domain=watched, names=pending)
        messages.success(
            request, f"Auto-watch on: {added} discovered host(s) are now watched servers, new ones will follow."
        )
    else:
        messages.success(request, "Auto-watch off: new hosts are listed but not watched.")
    return redirect("domain_detail", domain_id=watched.uuid)


@team_required(Role.MEMBER)
@require_POST
def domain_host_watch(request: TeamRequest, domain_id: Any, host_id: Any) -> HttpResponse:
    watched = _watched(request, domain_id)
    host = get_for_team_or_404(visible_hosts(watched), request.team, host_id)
    try:
        with transaction.atomic():
            server = services.server_enrol(team=watched.team, host=host.name, added_by=request.user)
        messages.success(request, f"Watching {server.label}.")
    except services.AlreadyWatched as already:
        messages.info(request, f"{already.server.label} is already watched.")
    except InvalidTarget as error:
        messages.error(request, f"Not watched: {error}")
        return redirect(_hosts_tab(watched))
    DiscoveredHost.objects.filter(pk=host.pk, watched_at=None).update(watched_at=timezone.now())
    return redirect(_hosts_tab(watched))


def _hosts_tab(watched: WatchedDomain) -> str:
    return f"{reverse('domain_detail', args=[watched.uuid])}?tab=hosts"
