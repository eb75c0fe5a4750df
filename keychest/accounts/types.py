"""Request types for views behind login: `request.user` is a User, the current team is set."""

from __future__ import annotations

from typing import TYPE_CHECKING

from django.http import HttpRequest

if TYPE_CHECKING:
    from keychest.accounts.models import Membership, Team, User


class AuthedRequest(HttpRequest):
    user: User  # type: ignore[assignment]
    team: Team | None
    membership: Membership | None


class TeamRequest(HttpRequest):
    """A request past `@team_required` (or `CurrentTeamMiddleware` for a signed-in member):
    `request.user` is a User and the current team and the user's membership in it are set."""

    user: User  # type: ignore[assignment]
    team: Team
    membership: Membership
