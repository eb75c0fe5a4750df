from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from keychest.accounts.models import Membership


def current_team(request: HttpRequest) -> dict[str, Any]:
    """The current team and the user's other teams, for the team switcher in the base template."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}

    def memberships() -> list[Membership]:
        return list(Membership.objects.filter(user=user).select_related("team").order_by("team__name", "id"))

    membership = getattr(request, "membership", None)
    return {
        "current_membership": membership,
        "current_team": membership.team if membership else None,
        "my_memberships": memberships,
    }
