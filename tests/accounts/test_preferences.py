from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db


def test_time_zone_and_notification_email_are_saved(people, alice_client: Client) -> None:
    response = alice_client.post(
        reverse("preferences"), {"timezone": "Europe/Prague", "notification_email": "Ops@Example.org"}
    )
    assert response.status_code == 302
    people.alice.refresh_from_db()
    assert people.alice.timezone == "Europe/Prague"
    assert people.alice.notification_email == "ops@example.org"
    # An outside address takes effect once its holder confirms (tests/security/test_outside_recipients.py).
    assert people.alice.notification_address() == "alice@example.org"


def test_notification_email_defaults_to_login_email(people) -> None:
    assert people.alice.notification_address() == "alice@example.org"


def test_unknown_time_zone_is_rejected(people, alice_client: Client) -> None:
    response = alice_client.post(reverse("preferences"), {"timezone": "Mars/Olympus", "notification_email": ""})
    assert response.status_code == 200
    people.alice.refresh_from_db()
    assert people.alice.timezone == "UTC"
