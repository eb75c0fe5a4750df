"""The team's server pages: the list (search, filter, sort, paginate), add one, bulk paste with
first-scan progress, pause/resume and remove. The server detail page is the scanner's
(`server_detail`); these pages link to it.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.db.models import Case, Exists, IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from keychest.accounts.decorators import team_required
from keychest.accounts.models import Role
from keychest.tenancy import get_for_team_or_404
from monitors import services
from monitors.checks import DOWN_CODES
from monitors.models import Finding, Protocol, ScanResult, Server, TeamCABundle
from monitors.targets import InvalidTarget

PAGE_SIZE = 50
STATUSES = (
    ("", "Any status"),
    ("ok", "OK"),
    ("warning", "Warnings"),
    ("problem", "Errors"),
    ("down", "Down"),
    ("pending", "Waiting for first scan"),
    ("paused", "Paused"),
)
SORTS = {
    "host": ("host", "port", "id"),
    "-host": ("-host", "-port", "-id"),
    "expiry": ("expires_at", "host", "id"),
    "-expiry": ("-expires_at", "host", "id"),
    "last_scan": ("last_scan_at", "host", "id"),
    "-last_scan": ("-last_scan_at", "host", "id"),
    "status": ("-worst", "expires_at", "host", "id"),
}
SEVERITY_RANK = {"info": 0, "warning": 1, "error": 2, "critical": 3}


class AddServerForm(forms.Form):
    host = forms.CharField(max_length=300, label="Server", help_text="host or host:port, e.g. example.com:443")
    protocol = forms.ChoiceField(choices=[("", "Guess from the port"), *Protocol.choices], required=False)
    tags = forms.CharField(max_length=300, required=False, help_text="comma-separated")


class BulkAddForm(forms.Form):
    """Many servers at once; `ca_bundle` (offered when the team has private CAs) applies to all."""

    text = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 8, "placeholder": "example.com\nmail.example.com:465\n# comments are skipped"}
        ),
        label="Servers, one per line",
        max_length=100_000,
    )
    tags = forms.CharField(max_length=300, required=False, help_text="comma-separated, for every server")
    ca_bundle = forms.ModelChoiceField(
        queryset=TeamCABundle.objects.none(),
        required=False,
        label="Also trust this private CA",
        to_field_name="uuid",
        empty_label="Public CAs only",
    )

    def __init__(self, *args: Any, team: Any = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        bundles = TeamCABundle.objects.for_team(team) if team is not None else TeamCABundle.objects.none()
        self.fields["ca_bundle"].queryset = bundles  # type: ignore[attr-defined]
        if team is None or not bundles.exists():
            del self.fields["ca_bundle"]


def _tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


def servers_annotated(team: Any) -> QuerySet[Server]:
    """The team's watched servers with expiry, issuer, worst open finding and "down" in one query."""
    current = (
        ScanResult.objects.filter(server=OuterRef("pk"), current=True).exclude(not_after=None).order_by("not_after")
    )
    open_findings = Finding.objects.filter(server=OuterRef("pk"), resolved_at=None)
    rank = Case(
        *[When(severity=name, then=Value(value)) for name, value in SEVERITY_RANK.items()],
        default=Value(0),
        output_field=IntegerField(),
    )
    worst = open_findings.annotate(rank=rank).values("server").annotate(m=Max("rank")).values("m")
    return (
        Server.objects.for_team(team)
        .filter(removed_at=None)
        .annotate(
            expires_at=Subquery(current.values("not_after")[:1]),
            issuer_name=Subquery(current.values("issuer")[:1]),
            worst=Subquery(worst, output_field=IntegerField()),
            down=Exists(open_findings.filter(code__in=DOWN_CODES)),
        )
    )


def server_status(server: Server) -> str:
    if server.paused:
        return "paused"
    if server.last_scan_at is None:
        return "pending"
    if getattr(server, "down", False):
        return "down"
    worst = getattr(server, "worst", None) or 0
    return {3: "critical", 2: "error", 1: "warning"}.get(worst, "ok")


def _filter_status(qs: QuerySet[Server], status: str) -> QuerySet[Server]:
    scanned = Q(paused=False, last_scan_at__isnull=False)
    if status == "paused":
        return qs.filter(paused=True)
    if status == "pending":
        return qs.filter(paused=False, last_scan_at=None)
    if status == "down":
        return qs.filter(scanned, down=True)  # type: ignore[misc]  # annotations
    if status == "problem":
        return qs.filter(scanned, down=False, worst__gte=2)  # type: ignore[misc]  # annotations
    if status == "warning":
        return qs.filter(scanned, down=False, worst=1)  # type: ignore[misc]  # annotations
    if status == "ok":
        return qs.filter(scanned, down=False).filter(Q(worst__isnull=True) | Q(worst=0))  # type: ignore[misc]  # annotations
    return qs


def _filter_tag(qs: QuerySet[Server], tag: str) -> QuerySet[Server]:
    if connection.vendor == "postgresql":
        return qs.filter(tags__contains=[tag])
    # SQLite has no JSON containment: match the quoted element in the stored JSON text.
    import json

    return qs.filter(tags__icontains=json.dumps(tag))


def first_scan_progress(team: Any) -> dict[str, int]:
    """How many servers added in the last hour still wait for their first scan."""
    since = timezone.now() - timedelta(hours=1)
    recent = Server.objects.for_team(team).filter(removed_at=None, paused=False, created_at__gte=since)
    total = recent.count()
    pending = recent.filter(last_scan_at=None).count() if total else 0
    return {"total": total, "pending": pending, "done": total - pending}


def _queue_first_scans(ids: list[int]) -> None:
    """Scan new servers right away instead of at the scheduler's next pass (harmless if both run)."""
    if not ids:
        return
    from monitors.tasks import scan_batch

    transaction.on_commit(lambda: scan_batch.delay(ids))


@team_required()
def server_list(request: HttpRequest) -> HttpResponse:
    team = request.team  # type: ignore[attr-defined]
    qs = servers_annotated(team)
    search = request.GET.get("q", "").strip()[:200]
    status = request.GET.get("status", "")
    tag = request.GET.get("tag", "").strip()[:50]
    sort = request.GET.get("sort", "host")
    if sort not in SORTS:
        sort = "host"
    if search:
        qs = qs.filter(host__icontains=search.lower())
    if status:
        qs = _filter_status(qs, status)
    if tag:
        qs = _filter_tag(qs, tag)
    qs = qs.order_by(*SORTS[sort])
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    servers = list(page.object_list)
    for server in servers:
        server.status = server_status(server)  # type: ignore[attr-defined]
    context = {
        "team": team,
        "page_obj": page,
        "servers": servers,
        "search": search,
        "status": status,
        "tag": tag,
        "sort": sort,
        "statuses": STATUSES,
        "add_form": AddServerForm(),
        "bulk_form": BulkAddForm(team=team),
        "progress": first_scan_progress(team),
        "can_edit": request.membership.has_role(Role.MEMBER),  # type: ignore[attr-defined]
    }
    return render(request, "dashboard/servers/list.html", context)


@team_required()
def server_progress(request: HttpRequest) -> HttpResponse:
    """The first-scan progress fragment; htmx polls it while scans run, then reloads the page."""
    progress = first_scan_progress(request.team)  # type: ignore[attr-defined]
    response = render(request, "dashboard/servers/_progress.html", {"progress": progress})
    if request.headers.get("HX-Request") and not progress["pending"] and request.GET.get("was_pending"):
        response["HX-Refresh"] = "true"
    return response


@team_required(Role.MEMBER)
@require_POST
def server_add(request: HttpRequest) -> HttpResponse:
    team = request.team  # type: ignore[attr-defined]
    form = AddServerForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter a server as host or host:port.")
        return redirect("server_list")
    try:
        with transaction.atomic():
            server = services.server_enrol(
                team=team,
                host=form.cleaned_data["host"],
                protocol=form.cleaned_data["protocol"] or None,
                tags=_tags(form.cleaned_data["tags"]),
                added_by=request.user,  # type: ignore[arg-type]
            )
            _queue_first_scans([server.pk])
    except InvalidTarget as error:
        messages.error(request, f"Not added: {error}")
        return redirect("server_list")
    except services.AlreadyWatched as error:
        messages.info(request, f"{error.server.label} is already watched.")
        return redirect("server_list")
    messages.success(request, f"Watching {server.label}; the first scan runs now.")
    return redirect("server_list")


@team_required(Role.MEMBER)
@require_POST
def server_bulk_add(request: HttpRequest) -> HttpResponse:
    team = request.team  # type: ignore[attr-defined]
    form = BulkAddForm(request.POST, team=team)
    if not form.is_valid():
        messages.error(request, "Paste at least one server, one per line.")
        return redirect("server_list")
    with transaction.atomic():
        result = services.servers_enrol_bulk(
            team=team,
            text=form.cleaned_data["text"],
            tags=_tags(form.cleaned_data["tags"]),
            added_by=request.user,  # type: ignore[arg-type]
        )
        bundle = form.cleaned_data.get("ca_bundle")
        if bundle is not None:
            for server in result.created:
                services.server_update(server=server, ca_bundle=bundle)
        _queue_first_scans([server.pk for server in result.created])
    parts = [f"{len(result.created)} added"]
    if result.existing:
        parts.append(f"{len(result.existing)} already watched")
    if result.errors:
        parts.append(f"{len(result.errors)} not understood")
    level = messages.success if result.created else messages.warning
    level(request, ", ".join(parts) + ".")
    for error in result.errors[:20]:
        messages.error(request, f"Line {error.line_number}: {error.line} — {error.message}")
    return redirect(f"{reverse('server_list')}?sort=-last_scan")


@team_required(Role.MEMBER)
@require_POST
def server_pause_toggle(request: HttpRequest, server_id: str) -> HttpResponse:
    server = get_for_team_or_404(Server.objects.filter(removed_at=None), request.team, server_id)  # type: ignore[attr-defined]
    if server.paused:
        services.server_resume(server=server)
        messages.success(request, f"{server.label} resumed.")
    else:
        services.server_pause(server=server)
        messages.success(request, f"{server.label} paused: not scanned until resumed.")
    return redirect(_back(request))


@team_required(Role.MEMBER)
@require_POST
def server_remove(request: HttpRequest, server_id: str) -> HttpResponse:
    server = get_for_team_or_404(Server.objects.filter(removed_at=None), request.team, server_id)  # type: ignore[attr-defined]
    services.server_remove(server=server)
    messages.success(request, f"{server.label} is no longer watched (its history is kept).")
    return redirect(_back(request))


def _back(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if target.startswith("/") and not target.startswith("//"):
        return target
    return reverse("server_list")
