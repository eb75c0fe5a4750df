"""Confirming the address signs the new person in, in any browser, once (issue 14 item 12)."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from keychest.accounts.models import User

pytestmark = pytest.mark.django_db
PASSWORD = "a long enough passphrase 1"


def _sign_up(email: str) -> str:
    Client().post("/accounts/signup/", {"email": email, "password1": PASSWORD, "password2": PASSWORD})
    [message] = [m for m in mail.outbox if email in m.to]
    return re.search(r"https?://\S+(/accounts/confirm-email/\S+/)", message.body).group(1)  # type: ignore[union-attr]


def _signed_in_as(client: Client) -> str | None:
    user_id = client.session.get("_auth_user_id")
    return User.objects.get(pk=user_id).email if user_id else None


def test_a_link_opened_in_another_browser_signs_the_new_person_in_once() -> None:
    link = _sign_up("dana@example.org")
    phone = Client()
    response = phone.post(link)
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert _signed_in_as(phone) == "dana@example.org"
    assert "is confirmed and you are signed in" in phone.get("/dashboard/").content.decode()
    # The same link again (replayed, or from a log) signs nobody in.
    stranger = Client()
    stranger.post(link)
    assert _signed_in_as(stranger) is None


def test_a_link_never_signs_into_an_account_already_in_use() -> None:
    link = _sign_up("erin@example.org")
    from django.utils import timezone

    User.objects.filter(email="erin@example.org").update(last_login=timezone.now())
    other = Client()
    other.post(link)
    assert _signed_in_as(other) is None
