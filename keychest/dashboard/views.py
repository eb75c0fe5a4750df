"""The dashboard: tiles, renewal calendar, renewal planner and incident tables of the current team."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone

from keychest.accounts.decorators import team_required
from keychest.dashboard.charts import HEIGHT, WIDTH, calendar_columns
from keychest.dashboard.selectors import dashboard_for


@team_required()
def dashboard(request: HttpRequest) -> HttpResponse:
    team = request.team  # type: ignore[attr-defined]
    data = dashboard_for(team=team, now=timezone.now(), tz=request.user.tzinfo)  # type: ignore[union-attr]
    return render(
        request,
        "dashboard/index.html",
        {
            "team": team,
            "d": data,
            "columns": calendar_columns(data.calendar),
            "chart": {"width": WIDTH, "height": HEIGHT, "baseline": HEIGHT - 28},
        },
    )
