"""The team's server pages: the list (search, filter, sort, paginate), add one, bulk paste with
first-scan progress, pause/resume and remove. The server detail page is the scanner's
(`server_detail`); these pages link to it.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.db import connection, transaction
from django.db.models import Case, Count, Exists, IntegerField, Max, OuterRef, Q, QuerySet, Subquery, Value, When
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import SafeString
from django.utils.translation import get_language
from django.views.decorators.http import require_POST

from kcproto.checks import DOWN_CODES
from kcproto.targets import InvalidTarget
from keychest.accounts.decorators import team_required
from keychest.accounts.models import Role
from keychest.accounts.types import TeamRequest
from keychest.tenancy import get_for_team_or_404
from monitors import services
from monitors.models import Finding, Protocol, ScanResult, Server, TeamCABundle

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
# The columns the list's rows and `server_status` read (dashboard/server_rows.py); the
# annotations come with them. Reading any other field of a listed server would cost a query.
ROW_FIELDS = ("uuid", "host", "port", "protocol", "paused", "last_scan_at", "tags")


# Form errors in the words of the page: which field, and what to do.
_TOO_LONG = {"max_length": "at most %(limit_value)d characters, please (this has %(show_value)d)"}


class AddServerForm(forms.Form):
    host = forms.CharField(
        max_length=300,
        label="Server",
        help_text="host or host:port, e.g. example.com:443",
        error_messages={**_TOO_LONG, "required": "enter a server name, e.g. example.com or mail.example.com:465"},
    )
    protocol = forms.ChoiceField(choices=[("", "Guess from the port"), *Protocol.choices], required=False)
    tags = forms.CharField(max_length=300, required=False, help_text="comma-separated", error_messages=_TOO_LONG)


def form_problems(form: forms.Form) -> str:
    """Every error of a bound form as one line: "Tags: at most 300 characters, please (...)"."""
    lines = []
    for name, errors in form.errors.items():
        field = form.fields.get(name)
        label = f"{field.label or name.capitalize()}: " if field is not None else ""
        lines.append(f"{label}{' '.join(str(error) for error in errors)}.")
    return " ".join(lines)


class BulkAddForm(forms.Form):
    """Many servers at once; `ca_bundle` (offered when the team has private CAs) applies to all."""

    text = forms.CharField(
        widget=forms.Textarea(
            attrs={"rows": 8, "placeholder": "example.com\nmail.example.com:465\n# comments are skipped"}
        ),
        label="Servers, one per line",
        max_length=100_000,
        error_messages={**_TOO_LONG, "required": "paste at least one server, one per line"},
    )
    tags = forms.CharField(
        max_length=300, required=False, help_text="comma-separated, for every server", error_messages=_TOO_LONG
    )
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


@dataclass(frozen=True, slots=True)
class RenderedField:
    """A field of an unbound form as the page's template reads it: `{{ field }}` (the widget,
    rendered already), `field.label`, `field.id_for_label`, `field.help_text`.
    """

    id_for_label: str
    label: str
    help_text: str
    html: SafeString

    def __str__(self) -> str:
        return self.html

    def __html__(self) -> str:
        return self.html


@functools.lru_cache(maxsize=16)
def unbound_fields(form_class: type[forms.Form], language: str | None) -> tuple[RenderedField, ...]:
    """`form_class()`'s fields, rendered once per process and language.

    Django renders every widget through its form templates: 0.8 ms a page for the two add forms,
    the same HTML every time. Only for forms whose fields and choices never change (not the
    private-CA choice of `BulkAddForm(team=...)`, which comes from the database).
    """
    return tuple(
        RenderedField(field.id_for_label, str(field.label), str(field.help_text), SafeString(str(field)))
        for field in form_class()
    )


def _tags(text: str) -> list[str]:
    return [t.strip() for t in text.split(",") if t.strip()]


@functools.cache
def _servers_annotated_unscoped() -> QuerySet[Server]:
    """The annotations of `servers_annotated` over every team's servers; never evaluated itself.

    Building the four subqueries (their inner query sets, the `Case`, resolving `OuterRef`) cost
    about 1.7 ms of CPU per request, the same every time. Built once per process here, each
    request clones it and scopes the clone to one team (as a class-based view's `queryset`
    attribute is cloned per request): query sets are never changed in place.
    """
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
    # The list's "why": the finding behind the status (a "down" one first, then the most severe).
    is_down = Case(When(code__in=DOWN_CODES, then=Value(1)), default=Value(0), output_field=IntegerField())
    why = open_findings.annotate(rank=rank, is_down=is_down).order_by("-is_down", "-rank", "first_seen", "id")
    return Server.objects.annotate(
        expires_at=Subquery(current.values("not_after")[:1]),
        issuer_name=Subquery(current.values("issuer")[:1]),
        worst=Subquery(worst, output_field=IntegerField()),
        down=Exists(open_findings.filter(code__in=DOWN_CODES)),
        why_code=Subquery(why.values("code")[:1]),
        why_address=Subquery(why.values("address")[:1]),
    )


def servers_annotated(team: Any) -> QuerySet[Server]:
    """The team's watched servers with expiry, issuer, worst open finding and "down" in one query."""
    return _servers_annotated_unscoped().for_team(team).filter(removed_at=None)  # type: ignore[attr-defined]


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


def _server_counts(team: Any) -> dict[str, int]:
    """The team's watched servers (`servers`) and, of those added in the last hour and not paused,
    how many there are (`recent`) and how many wait for their first scan (`pending`): one pass
    over the team's rows instead of a `COUNT` each.
    """
    since = timezone.now() - timedelta(hours=1)
    recent = Q(paused=False, created_at__gte=since)
    return (
        Server.objects.for_team(team)
        .filter(removed_at=None)
        .aggregate(
            servers=Count("pk"),
            recent=Count("pk", filter=recent),
            pending=Count("pk", filter=recent & Q(last_scan_at=None)),
        )
    )


def _progress(counts: dict[str, int]) -> dict[str, int]:
    return {"total": counts["recent"], "pending": counts["pending"], "done": counts["recent"] - counts["pending"]}


def first_scan_progress(team: Any, ids: list[int] | None = None) -> dict[str, int]:
    """How many servers added in the last hour still wait for their first scan; with `ids`, of
    those servers only (what this person just added: not what others added in the hour)."""
    if ids is None:
        return _progress(_server_counts(team))
    counts = (
        Server.objects.for_team(team)
        .filter(pk__in=ids, removed_at=None, paused=False)
        .aggregate(recent=Count("pk"), pending=Count("pk", filter=Q(last_scan_at=None)))
    )
    return _progress(counts)


# The servers the person's last add created, and the lines it could not read: the progress bar
# counts these, and the errors stay on the page after the progress reloads it (issue 14).
BATCH_KEY = "kc_last_add"
MAX_BATCH_ERRORS = 50


def _batch_remember(request: HttpRequest, team: Any, ids: list[int], errors: list[str]) -> None:
    request.session[BATCH_KEY] = {"team": str(team.uuid), "ids": ids, "errors": errors[:MAX_BATCH_ERRORS]}


def _batch(request: HttpRequest, team: Any) -> dict[str, Any] | None:
    batch = request.session.get(BATCH_KEY)
    if not isinstance(batch, dict) or batch.get("team") != str(team.uuid):
        return None
    return batch


@team_required()
def server_list(request: TeamRequest) -> HttpResponse:
    team = request.team
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
    counts = _server_counts(team)
    batch = _batch(request, team)
    paginator = Paginator(qs.only(*ROW_FIELDS).order_by(*SORTS[sort]), PAGE_SIZE)
    if not (search or status or tag):
        # Unfiltered, the page lists exactly the servers counted above: no COUNT of its own.
        paginator.count = counts["servers"]
    page = paginator.get_page(request.GET.get("page"))
    servers = list(page.object_list)
    for server in servers:
        server.status = server_status(server)  # type: ignore[attr-defined]
    can_edit = request.membership.has_role(Role.MEMBER)
    add_form: Any = None
    bulk_form: Any = None
    if can_edit:  # only editors see the add forms
        add_form = unbound_fields(AddServerForm, get_language())
        # The bulk form offers the team's private CAs, if it has any (a query); without them it
        # is the same form for every team.
        bulk_form = BulkAddForm(team=team)
        if "ca_bundle" not in bulk_form.fields:
            bulk_form = unbound_fields(BulkAddForm, get_language())
    context = {
        "team": team,
        "page_obj": page,
        "servers": servers,
        "search": search,
        "status": status,
        "tag": tag,
        "sort": sort,
        "statuses": STATUSES,
        "add_form": add_form,
        "bulk_form": bulk_form,
        "progress": first_scan_progress(team, batch["ids"]) if batch else _progress(counts),
        "bulk_errors": batch["errors"] if batch else [],
        "can_edit": can_edit,
    }
    return render(request, "dashboard/servers/list.html", context)


@team_required()
def server_progress(request: TeamRequest) -> HttpResponse:
    """The first-scan progress fragment; htmx polls it while scans run, then reloads the page."""
    batch = _batch(request, request.team)
    progress = first_scan_progress(request.team, batch["ids"] if batch else None)
    response = render(request, "dashboard/servers/_progress.html", {"progress": progress})
    if request.headers.get("HX-Request") and not progress["pending"] and request.GET.get("was_pending"):
        response["HX-Refresh"] = "true"
    return response


@team_required(Role.MEMBER)
@require_POST
def server_add(request: TeamRequest) -> HttpResponse:
    team = request.team
    form = AddServerForm(request.POST)
    if not form.is_valid():
        messages.error(request, f"Not added. {form_problems(form)}")
        return redirect("server_list")
    try:
        with transaction.atomic():
            server = services.server_enrol(
                team=team,
                host=form.cleaned_data["host"],
                protocol=form.cleaned_data["protocol"] or None,
                tags=_tags(form.cleaned_data["tags"]),
                added_by=request.user,
            )
    except InvalidTarget as error:
        messages.error(request, f"Not added: {error}")
        return redirect("server_list")
    except services.AlreadyWatched as error:
        messages.info(request, f"{error.server.label} is already watched.")
        return redirect("server_list")
    _batch_remember(request, team, [server.pk], [])
    typed = form.cleaned_data["host"].strip()
    # A pasted URL is read as its host (and https as port 443): say so rather than do it silently.
    read_as = f" (read from “{typed[:100]}”)" if "/" in typed else ""
    messages.success(request, f"Watching {server.label}{read_as}; the first scan runs now.")
    return redirect("server_list")


@team_required(Role.MEMBER)
@require_POST
def server_bulk_add(request: TeamRequest) -> HttpResponse:
    team = request.team
    form = BulkAddForm(request.POST, team=team)
    if not form.is_valid():
        messages.error(request, f"Nothing added. {form_problems(form)}")
        return redirect("server_list")
    with transaction.atomic():
        result = services.servers_enrol_bulk(
            team=team,
            text=form.cleaned_data["text"],
            tags=_tags(form.cleaned_data["tags"]),
            added_by=request.user,
        )
        bundle = form.cleaned_data.get("ca_bundle")
        if bundle is not None:
            for server in result.created:
                services.server_update(server=server, ca_bundle=bundle)
    parts = [f"{len(result.created)} added"]
    if result.existing:
        parts.append(f"{len(result.existing)} already watched")
    if result.errors:
        parts.append(f"{len(result.errors)} not understood")
    level = messages.success if result.created else messages.warning
    level(request, ", ".join(parts) + ".")
    # Per-line errors are shown in a card (bulk_errors) that outlives the progress's reload.
    lines = [f"Line {error.line_number}: {error.line} — {error.message}" for error in result.errors]
    _batch_remember(request, team, [server.pk for server in result.created], lines)
    return redirect(f"{reverse('server_list')}?sort=-last_scan")


@team_required(Role.MEMBER)
@require_POST
def server_pause_toggle(request: TeamRequest, server_id: str) -> HttpResponse:
    server = get_for_team_or_404(Server.objects.filter(removed_at=None), request.team, server_id)
    if server.paused:
        services.server_resume(server=server)
        messages.success(request, f"{server.label} resumed.")
    else:
        services.server_pause(server=server)
        messages.success(request, f"{server.label} paused: not scanned until resumed.")
    return redirect(_back(request))


@team_required(Role.MEMBER)
@require_POST
def server_remove(request: TeamRequest, server_id: str) -> HttpResponse:
    server = get_for_team_or_404(Server.objects.filter(removed_at=None), request.team, server_id)
    services.server_remove(server=server)
    messages.success(request, f"{server.label} is no longer watched (its history is kept).")
    return redirect(_back(request))


def _back(request: HttpRequest) -> str:
    target = request.POST.get("next", "")
    if target.startswith("/") and not target.startswith("//"):
        return target
    return reverse("server_list")
