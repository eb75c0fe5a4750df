from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client
from django.urls import reverse

from keychest.accounts.models import Membership, Role, User

pytestmark = pytest.mark.django_db


def _signup(client: Client, email: str = "newcomer@example.org") -> None:
    response = client.post(
        reverse("account_signup"),
        {"email": email, "password1": "a long enough passphrase 1", "password2": "a long enough passphrase 1"},
    )
    assert response.status_code == 302


def _confirmation_link(body: str) -> str:
    match = re.search(r"https?://[^\s]+/accounts/confirm-email/[^\s]+/", body)
    assert match, body
    return (
        match.group(0).split("testserver", 1)[-1]
        if "testserver" in match.group(0)
        else re.sub(r"^https?://[^/]+", "", match.group(0))
    )


def test_signup_sends_a_verification_email_and_creates_a_personal_team() -> None:
    client = Client()
    _signup(client)
    user = User.objects.get(email="newcomer@example.org")
    membership = Membership.objects.get(user=user)
    assert membership.role == Role.OWNER
    assert membership.team.is_personal
    assert len(mail.outbox) == 1
    assert "confirm-email" in mail.outbox[0].body


def test_an_unverified_user_cannot_sign_in() -> None:
    client = Client()
    _signup(client)
    client.logout()
    response = client.post(
        reverse("account_login"), {"login": "newcomer@example.org", "password": "a long enough passphrase 1"}
    )
    # allauth sends the user to "verification sent" instead of signing in.
    assert response.status_code == 302
    assert reverse("account_email_verification_sent") in response["Location"]
    assert client.get(reverse("dashboard")).status_code == 302


def test_following_the_link_verifies_by_post_only_and_signs_in() -> None:
    client = Client()
    _signup(client)
    link = _confirmation_link(mail.outbox[0].body)
    page = client.get(link)
    assert page.status_code == 200
    user = User.objects.get(email="newcomer@example.org")
    assert not user.emailaddress_set.get().verified, "GET must not verify"
    response = client.post(link)
    assert response.status_code == 302
    assert user.emailaddress_set.get().verified
    dashboard = client.get(reverse("dashboard"))
    assert dashboard.status_code == 200
    assert "newcomer&#x27;s team" in dashboard.content.decode() or "newcomer's team" in dashboard.content.decode()


def test_signup_rejects_a_duplicate_email_without_creating_a_second_account() -> None:
    client = Client()
    _signup(client)
    Client().post(
        reverse("account_signup"),
        {"email": "NEWCOMER@example.org", "password1": "another passphrase 22", "password2": "another passphrase 22"},
    )
    assert User.objects.filter(email__iexact="newcomer@example.org").count() == 1


def test_password_reset_sends_a_link(people) -> None:
    response = Client().post(reverse("account_reset_password"), {"email": "alice@example.org"})
    assert response.status_code == 302
    assert any("password/reset/key" in m.body for m in mail.outbox)


def test_two_factor_setup_page_is_available(alice_client: Client) -> None:
    response = alice_client.get(reverse("mfa_activate_totp"))
    # allauth asks to re-authenticate or shows the TOTP form: both mean MFA is wired in.
    assert response.status_code in (200, 302)
    assert alice_client.get(reverse("mfa_index")).status_code == 200
