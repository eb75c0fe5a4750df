"""Tenancy in one place: every team-owned model is scoped through these helpers.

Another team's object is simply not in the scoped query set, so views answer 404 (never 403,
never data) — the same idea as NetBox's `RestrictedQuerySet.restrict`.
"""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from django.db import models
from django.http import Http404

# Teams and users are typed as plain models here: keychest.accounts (which holds Team and User)
# builds its team-owned models (API keys, claims) on this module, so this one imports nothing
# from it (`lint-imports`: no cycles).
M = TypeVar("M", bound=models.Model)


class TeamScopedQuerySet(models.QuerySet[M]):
    """A query set that knows how to restrict itself to one team or to a user's teams."""

    team_field = "team"

    def for_team(self, team: models.Model) -> TeamScopedQuerySet[M]:
        return self.filter(**{self.team_field: team})

    def for_user(self, user: Any) -> TeamScopedQuerySet[M]:
        if not getattr(user, "is_authenticated", False):
            return self.none()
        return self.filter(**{f"{self.team_field}__memberships__user": user})


class TeamOwnedModel(models.Model):
    """Abstract base of every tenant-owned row: a team, a public UUID, a creation time."""

    uuid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    team = models.ForeignKey("accounts.Team", on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    objects = TeamScopedQuerySet.as_manager()

    class Meta:
        abstract = True


def get_for_team_or_404(queryset: models.QuerySet[M] | type[M], team: models.Model, public_id: Any) -> M:
    """One object of `team` by its public UUID; anything else (another team's, malformed) is 404."""
    qs = queryset._default_manager.all() if isinstance(queryset, type) else queryset
    try:
        key = uuid.UUID(str(public_id))
    except (TypeError, ValueError):
        raise Http404("No such object") from None
    obj = qs.for_team(team).filter(uuid=key).first()  # type: ignore[attr-defined]
    if obj is None:
        raise Http404("No such object")
    return obj
