"""The team's IP-range pages: ranges with their last sweep, add (public ranges on the SaaS, any
range through an agent), and per range the TLS services found with "watch". Writes go through
discovery/services.py."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from agents.models import Agent
from discovery.models import COMMON_PORTS, FoundService, IPRange
from discovery.services import RangeRefused, range_add, range_remove, service_watch
from keychest.accounts.decorators import team_required
from keychest.accounts.models import Role
from keychest.accounts.types import TeamRequest
from keychest.tenancy import get_for_team_or_404


class RangeForm(forms.Form):
    cidr = forms.CharField(max_length=50, label="Range", help_text="CIDR, at most a /22, e.g. 203.0.113.0/24")
    ports = forms.CharField(
        max_length=200,
        initial="443",
        help_text="comma-separated; common: " + ", ".join(str(p) for p in COMMON_PORTS),
    )
    label = forms.CharField(max_length=100, required=False)
    agent = forms.ChoiceField(required=False, label="Swept by")

    def __init__(self, *args: object, agents: list[Agent], **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        choices = [("", "KeyChest (public ranges only)")] + [(str(a.uuid), f"agent {a.name}") for a in agents]
        self.fields["agent"].choices = choices  # type: ignore[attr-defined]

    def clean_ports(self) -> list[int]:
        try:
            return [int(p) for p in self.cleaned_data["ports"].replace(" ", "").split(",") if p]
        except ValueError:
            raise forms.ValidationError("ports are numbers separated by commas") from None


@team_required()
def range_list(request: TeamRequest) -> HttpResponse:
    team = request.team
    agents = list(Agent.objects.for_team(team).filter(revoked_at=None, enrolled_at__isnull=False))
    form = RangeForm(agents=agents)
    can_edit = request.membership.has_role(Role.ADMIN)
    if request.method == "POST":
        if not can_edit:
            return HttpResponse("Only admins and owners can add ranges.", status=403)
        form = RangeForm(request.POST, agents=agents)
        if form.is_valid():
            chosen = form.cleaned_data["agent"]
            agent = get_for_team_or_404(Agent, team, chosen) if chosen else None
            try:
                created = range_add(
                    team=team,
                    cidr=form.cleaned_data["cidr"],
                    ports=form.cleaned_data["ports"],
                    label=form.cleaned_data["label"],
                    agent=agent,
                )
            except RangeRefused as exc:
                form.add_error("cidr", str(exc))
            else:
                messages.success(request, f"{created.cidr} will be swept shortly.")
                return redirect("range_list")
    ranges = (
        IPRange.objects.for_team(team)
        .filter(removed_at=None)
        .select_related("agent")
        .annotate(service_count=Count("services", filter=Q(services__vanished_at=None)))
    )
    return render(
        request,
        "dashboard/ranges/list.html",
        {"team": team, "ranges": ranges, "form": form, "can_edit": can_edit},
        status=400 if form.errors else 200,
    )


@team_required()
def range_detail(request: TeamRequest, range_id: str) -> HttpResponse:
    team = request.team
    ip_range = get_for_team_or_404(IPRange.objects.filter(removed_at=None).select_related("agent"), team, range_id)
    services = FoundService.objects.for_team(team).filter(ip_range=ip_range).order_by("vanished_at", "address", "port")
    return render(
        request,
        "dashboard/ranges/detail.html",
        {
            "team": team,
            "ip_range": ip_range,
            "services": services[:2000],
            "can_watch": request.membership.has_role(Role.MEMBER),
            "can_edit": request.membership.has_role(Role.ADMIN),
        },
    )


@require_POST
@team_required(Role.MEMBER)
def range_watch(request: TeamRequest, range_id: str) -> HttpResponse:
    team = request.team
    ip_range = get_for_team_or_404(IPRange.objects.filter(removed_at=None), team, range_id)
    if not request.POST.get("service"):
        return HttpResponse("Choose a service to watch.", status=400)
    found = get_for_team_or_404(FoundService.objects.filter(ip_range=ip_range), team, request.POST["service"])
    try:
        server = service_watch(service=found, name=request.POST.get("name", ""), added_by=request.user)
    except (RangeRefused, ValueError) as exc:
        messages.error(request, str(exc))
    else:
        messages.success(request, f"{server.label} is watched.")
    return redirect("range_detail", range_id=ip_range.uuid)


@require_POST
@team_required(Role.ADMIN)
def range_remove_view(request: TeamRequest, range_id: str) -> HttpResponse:
    ip_range = get_for_team_or_404(IPRange.objects.filter(removed_at=None), request.team, range_id)
    range_remove(ip_range=ip_range)
    messages.success(request, f"{ip_range.cidr} is no longer swept.")
    return redirect("range_list")
