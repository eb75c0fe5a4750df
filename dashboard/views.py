"""The dashboard: tiles, renewal calendar, renewal planner and incident tables of the current team."""

from __future__ import annotations

from django.http import HttpResponse
from django.shortcuts import render
from django.utils import timezone

from agents.models import Agent
from dashboard.charts import HEIGHT, WIDTH, calendar_columns
from dashboard.selectors import dashboard_for
from health.checks import team_freshness_from
from keychest.accounts.decorators import team_required
from keychest.accounts.types import TeamRequest


@team_required()
def dashboard(request: TeamRequest) -> HttpResponse:
    team = request.team
    now = timezone.now()
    data = dashboard_for(team=team, now=now, tz=request.user.tzinfo)
    return render(
        request,
        "dashboard/index.html",
        {
            "team": team,
            "d": data,
            "freshness": team_freshness_from(
                servers=data.tiles.servers - data.tiles.servers_paused,
                overdue=data.tiles.scans_overdue,
                last_scan_at=data.tiles.last_scan_at,
                now=now,
            ),
            "silent_agents": [
                a
                for a in Agent.objects.for_team(team).filter(revoked_at=None, enrolled_at__isnull=False)
                if a.is_silent(now)
            ],
            "columns": calendar_columns(data.calendar),
            "chart": {"width": WIDTH, "height": HEIGHT, "baseline": HEIGHT - 28},
        },
    )
