"""The team's agents page: agents with their state, version, last contact and clock skew; create
(the enrolment token is shown once, in the answer to the POST), revoke, and assign servers.
Writes go through agents/services.py."""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.db.models import Count, Q
from django.http import HttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_POST

from agents.models import DEFAULT_CADENCE, MAX_CADENCE, MIN_CADENCE, Agent
from agents.services import agent_create, agent_revoke, server_assign
from keychest.accounts.decorators import team_required
from keychest.accounts.models import Role, Team
from keychest.accounts.types import TeamRequest
from keychest.tenancy import get_for_team_or_404
from monitors.models import Server


class AgentForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="e.g. the site or network it runs in")
    cadence = forms.IntegerField(
        min_value=MIN_CADENCE,
        max_value=MAX_CADENCE,
        initial=DEFAULT_CADENCE,
        help_text="seconds between two work-list fetches; silent for twice this long raises an alert",
    )


def _page(request: TeamRequest, team: Team, *, form: AgentForm, token: str = "", status: int = 200) -> HttpResponse:
    now = timezone.now()
    agents = list(
        Agent.objects.for_team(team).annotate(server_count=Count("servers", filter=Q(servers__removed_at=None)))
    )
    for agent in agents:
        agent.current_state = agent.state(now)  # type: ignore[attr-defined]
    can_edit = request.membership.has_role(Role.ADMIN)
    servers = Server.objects.for_team(team).filter(removed_at=None).select_related("agent").order_by("host", "port")
    return render(
        request,
        "dashboard/agents/list.html",
        {
            "team": team,
            "agents": agents,
            "active_agents": [a for a in agents if a.is_active],
            "servers": servers[:500],
            "form": form,
            "token": token,
            "can_edit": can_edit,
            "server_url": request.build_absolute_uri("/").rstrip("/"),
        },
        status=status,
    )


@team_required()
def agent_list(request: TeamRequest) -> HttpResponse:
    team = request.team
    if request.method != "POST":
        return _page(request, team, form=AgentForm())
    if not request.membership.has_role(Role.ADMIN):
        return HttpResponse("Only admins and owners can create agents.", status=403)
    form = AgentForm(request.POST)
    if not form.is_valid():
        return _page(request, team, form=form, status=400)
    _agent, token = agent_create(team=team, name=form.cleaned_data["name"], cadence=form.cleaned_data["cadence"])
    # Rendered in this answer only: the token is never stored in clear, nor put in the session.
    response = _page(request, team, form=AgentForm(), token=token)
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@team_required(Role.ADMIN)
def agent_revoke_view(request: TeamRequest, agent_id: str) -> HttpResponse:
    agent = get_for_team_or_404(Agent, request.team, agent_id)
    agent_revoke(agent=agent)
    messages.success(request, f"Agent {agent.name} is revoked: its key no longer works.")
    return redirect("agent_list")


@require_POST
@team_required(Role.ADMIN)
def agent_assign_view(request: TeamRequest) -> HttpResponse:
    team = request.team
    server = get_for_team_or_404(Server.objects.filter(removed_at=None), team, request.POST.get("server", ""))
    chosen = request.POST.get("agent", "")
    agent = get_for_team_or_404(Agent.objects.filter(revoked_at=None), team, chosen) if chosen else None
    server_assign(server=server, agent=agent)
    where = f"agent {agent.name}" if agent else "KeyChest itself"
    messages.success(request, f"{server.label} is now scanned by {where}.")
    return redirect("agent_list")
