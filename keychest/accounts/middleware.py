"""Attach the current team (and the user's membership in it) to every request."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse

from keychest.accounts.models import Membership

SESSION_KEY = "keychest_team"


def current_membership(request: HttpRequest) -> Membership | None:
    """The membership chosen in this session, else the personal team's, else the oldest."""
    user = request.user
    if not user.is_authenticated:
        return None
    memberships = Membership.objects.filter(user=user).select_related("team")
    chosen = request.session.get(SESSION_KEY)
    if chosen:
        membership = memberships.filter(team__uuid=chosen).first()
        if membership is not None:
            return membership
    return memberships.order_by("-team__is_personal", "created_at", "id").first()


class CurrentTeamMiddleware:
    """Sets `request.membership` and `request.team` (both None for anonymous users)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        membership = current_membership(request) if hasattr(request, "user") else None
        request.membership = membership  # type: ignore[attr-defined]
        request.team = membership.team if membership else None  # type: ignore[attr-defined]
        return self.get_response(request)
