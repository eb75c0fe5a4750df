"""View guards for team-scoped pages."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect

from keychest.accounts.models import Role

View = Callable[..., HttpResponse]


def team_required(minimum: str = Role.VIEWER) -> Callable[[View], View]:
    """Login required, a current team required, and at least `minimum` role in it."""

    def decorator(view: View) -> View:
        @login_required
        @wraps(view)
        def wrapped(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            membership = getattr(request, "membership", None)
            if membership is None:
                return redirect("team_list")
            if not membership.has_role(minimum):
                raise PermissionDenied("Your role in this team does not allow this.")
            return view(request, *args, **kwargs)

        return wrapped

    return decorator
