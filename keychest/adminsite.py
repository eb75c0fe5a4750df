"""The Django admin behind allauth: one login page, one two-factor step, one login rate limit.

Django's own admin login checks only the password and has no throttle (security finding 1), so
the admin's login view hands over to allauth's, and the admin also refuses any session of a
user with two-factor authentication that did not pass it (however that session was made).
"""

from __future__ import annotations

from typing import Any

from allauth.account.authentication import get_authentication_records
from allauth.mfa.utils import is_mfa_enabled
from django.conf import settings
from django.contrib.admin import AdminSite
from django.contrib.auth.views import redirect_to_login
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import resolve_url
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme


def session_passed_mfa(request: HttpRequest) -> bool:
    """True unless the user has two-factor authentication and this session never passed it."""
    user = request.user
    if not user.is_authenticated or not is_mfa_enabled(user):
        return True
    return any(record.get("method") == "mfa" for record in get_authentication_records(request, user))


class KeyChestAdminSite(AdminSite):
    """The admin site; staff only, signed in through allauth (password, then TOTP if set up)."""

    def has_permission(self, request: HttpRequest) -> bool:
        return super().has_permission(request) and session_passed_mfa(request)

    def login(self, request: HttpRequest, extra_context: dict[str, Any] | None = None) -> HttpResponse:
        index = reverse("admin:index", current_app=self.name)
        next_url = request.GET.get("next", "")
        if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
            next_url = index
        if not request.user.is_authenticated:
            # Never checks a password itself, whatever was posted: allauth's form does, with its
            # login_failed rate limit and then the MFA stage.
            return redirect_to_login(next_url or index, resolve_url(settings.LOGIN_URL))
        if not self.has_permission(request):
            raise PermissionDenied
        return HttpResponseRedirect(next_url or index)
