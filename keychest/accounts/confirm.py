"""Confirming the email address signs a new person in, wherever they open the link.

allauth signs in on confirmation only when the browser that signed up is the one confirming
(the signup is stashed in that session), so a link opened on a phone or in another browser
ended on the login page. Here the confirming browser is signed in too, but only when it is safe:
the address was not verified before this request (so a link, replayed later, signs nobody in)
and the account has never signed in (so a confirmation link is never a way into an account
somebody already uses).
"""

from __future__ import annotations

from typing import Any

from allauth.account.models import EmailAddress
from allauth.account.views import ConfirmEmailView as AllauthConfirmEmailView
from django.contrib import messages
from django.contrib.auth import login
from django.http import HttpResponse
from django.shortcuts import redirect

from keychest.accounts.models import User

BACKEND = "allauth.account.auth_backends.AuthenticationBackend"


class ConfirmEmailView(AllauthConfirmEmailView):
    def post(self, *args: Any, **kwargs: Any) -> HttpResponse:
        confirmation = self.get_object()
        was_verified = bool(confirmation and confirmation.email_address.verified)
        response = super().post(*args, **kwargs)
        if was_verified or self.request.user.is_authenticated or confirmation is None:
            return response
        address = EmailAddress.objects.filter(pk=confirmation.email_address.pk, verified=True).first()
        user = User.objects.filter(pk=address.user_id).first() if address is not None else None
        if user is None or not user.is_active or user.last_login is not None:
            return response
        login(self.request, user, backend=BACKEND)
        messages.success(self.request, f"{address.email} is confirmed and you are signed in.")  # type: ignore[union-attr]
        return redirect("dashboard")


confirm_email = ConfirmEmailView.as_view()
