"""Security finding 1: the admin goes through allauth's login, its two-factor step and its login
rate limit; a password alone never opens /admin/ for a user who has TOTP."""

from __future__ import annotations

import pytest
from allauth.mfa.totp.internal.auth import (
    TOTP,
    format_hotp_value,
    generate_totp_secret,
    hotp_value,
    yield_hotp_counters_from_time,
)
from django.test import Client
from django.urls import reverse

from tests.conftest import PASSWORD, People

pytestmark = pytest.mark.django_db


def _current_code(secret: str) -> str:
    counters = list(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counters[len(counters) // 2]))


@pytest.fixture
def admin_secret(people: People) -> str:
    """alice is a superuser with TOTP."""
    people.alice.is_staff = people.alice.is_superuser = True
    people.alice.save(update_fields=["is_staff", "is_superuser"])
    secret = generate_totp_secret()
    TOTP.activate(people.alice, secret)
    return secret


def _opens_admin(client: Client) -> bool:
    return client.get("/admin/accounts/user/").status_code == 200


def test_a_correct_password_without_totp_at_admin_login_is_refused(admin_secret: str) -> None:
    client = Client()
    response = client.post("/admin/login/?next=/admin/", {"username": "alice@example.org", "password": PASSWORD})
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("account_login")), "the admin login hands over to allauth"
    assert not _opens_admin(client)
    assert client.get(reverse("dashboard")).status_code == 302, "nor does the session open the dashboard"


def test_the_admin_login_page_sends_people_to_the_allauth_login(admin_secret: str) -> None:
    response = Client().get("/admin/login/?next=/admin/")
    assert response.status_code == 302
    assert response["Location"] == reverse("account_login") + "?next=/admin/"


def test_password_then_totp_through_allauth_opens_the_admin(admin_secret: str) -> None:
    client = Client()
    response = client.post(reverse("account_login"), {"login": "alice@example.org", "password": PASSWORD})
    assert response["Location"] == reverse("mfa_authenticate")
    assert not _opens_admin(client), "the password step alone does not open the admin"
    client.post(reverse("mfa_authenticate"), {"code": _current_code(admin_secret)})
    assert _opens_admin(client)


def test_a_session_that_skipped_the_second_factor_is_refused(admin_secret: str, people: People) -> None:
    """Defence in depth: however a session was made, a TOTP user needs the MFA step in it."""
    client = Client()
    client.force_login(people.alice)
    assert not _opens_admin(client)
    assert client.get("/admin/login/").status_code == 403


def test_staff_without_totp_sign_in_through_allauth(people: People) -> None:
    people.alice.is_staff = people.alice.is_superuser = True
    people.alice.save(update_fields=["is_staff", "is_superuser"])
    client = Client()
    response = client.post(reverse("account_login"), {"login": "alice@example.org", "password": PASSWORD})
    assert response.status_code == 302
    assert _opens_admin(client)


def test_admin_login_cannot_be_brute_forced(people: People) -> None:
    """30 wrong passwords then the right one at /admin/login/: the old login let the last one in."""
    people.alice.is_staff = people.alice.is_superuser = True
    people.alice.save(update_fields=["is_staff", "is_superuser"])
    client = Client()
    for attempt in range(30):
        client.post("/admin/login/", {"username": "alice@example.org", "password": f"wrong {attempt}"})
    client.post("/admin/login/", {"username": "alice@example.org", "password": PASSWORD})
    assert not _opens_admin(client)


def test_the_login_behind_the_admin_is_rate_limited(people: People) -> None:
    client = Client()
    for attempt in range(10):
        client.post(reverse("account_login"), {"login": "alice@example.org", "password": f"wrong {attempt}"})
    response = client.post(reverse("account_login"), {"login": "alice@example.org", "password": PASSWORD})
    assert response.status_code in (200, 429)
    assert "Too many failed login attempts" in response.content.decode()
    assert client.get(reverse("dashboard")).status_code == 302
