from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from notifications.models import NotificationPreferences

pytestmark = pytest.mark.django_db


def test_preferences_are_saved(people, alice_client: Client) -> None:
    response = alice_client.post(
        reverse("notification_preferences"),
        {
            "weekly_report_enabled": "on",
            "weekly_report_day": "5",
            "weekly_report_hour": "7",
            "digest_mode": "daily",
            "alert_kinds": ["server_down", "certificate_expired"],
        },
    )
    assert response.status_code == 302
    prefs = NotificationPreferences.objects.get(user=people.alice)
    assert (prefs.weekly_report_day, prefs.weekly_report_hour, prefs.send_all_good) == (5, 7, False)
    assert prefs.digest_mode == "daily" and prefs.alert_kinds == ["certificate_expired", "server_down"]


def test_page_shows_defaults_and_the_time_zone(people, alice_client: Client) -> None:
    page = alice_client.get(reverse("notification_preferences")).content.decode()
    assert "Monday" in page and "08:00" in page and "UTC" in page


def test_no_kinds_needs_alerts_off(people, alice_client: Client) -> None:
    data = {"weekly_report_day": "1", "weekly_report_hour": "8", "digest_mode": "immediate"}
    assert alice_client.post(reverse("notification_preferences"), data).status_code == 200
    data["digest_mode"] = "off"
    assert alice_client.post(reverse("notification_preferences"), data).status_code == 302


def test_anonymous_users_are_sent_to_login() -> None:
    response = Client().get(reverse("notification_preferences"))
    assert response.status_code == 302 and "login" in response["Location"]
