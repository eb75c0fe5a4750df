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

from tests.conftest import PASSWORD

pytestmark = pytest.mark.django_db


def _current_code(secret: str) -> str:
    counters = list(yield_hotp_counters_from_time())
    return format_hotp_value(hotp_value(secret, counters[len(counters) // 2]))


def _login(client: Client) -> str:
    response = client.post(reverse("account_login"), {"login": "alice@example.org", "password": PASSWORD})
    assert response.status_code == 302
    return response["Location"]


def test_a_user_with_totp_must_give_a_code_to_sign_in(people) -> None:
    secret = generate_totp_secret()
    TOTP.activate(people.alice, secret)
    client = Client()
    assert _login(client) == reverse("mfa_authenticate")
    assert client.get(reverse("dashboard")).status_code == 302, "not signed in before the code"

    client.post(reverse("mfa_authenticate"), {"code": "000000" if _current_code(secret) != "000000" else "111111"})
    assert client.get(reverse("dashboard")).status_code == 302, "a wrong code does not sign in"

    response = client.post(reverse("mfa_authenticate"), {"code": _current_code(secret)})
    assert response.status_code == 302
    assert client.get(reverse("dashboard")).status_code == 200


def test_without_totp_the_password_is_enough(people) -> None:
    client = Client()
    assert _login(client) == reverse("dashboard")
