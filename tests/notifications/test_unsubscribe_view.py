from __future__ import annotations

import pytest
from django.test import Client

from notifications.models import DigestMode, NotificationPreferences
from notifications.unsubscribe import unsubscribe_token, unsubscribe_url

pytestmark = pytest.mark.django_db


def _path(user, what: str = "weekly") -> str:
    return unsubscribe_url(user=user, what=what).removeprefix("http://127.0.0.1:8000")


def test_one_click_post_unsubscribes_without_login_cookies_or_csrf(people) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post(_path(people.alice), {"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    assert b"You will no longer receive the weekly report" in response.content
    assert not NotificationPreferences.objects.get(user=people.alice).weekly_report_enabled
    assert not client.cookies.get("sessionid")


def test_get_only_shows_a_confirmation_page(people) -> None:
    response = Client().get(_path(people.alice))
    assert response.status_code == 200
    assert b'<form method="post">' in response.content
    assert not NotificationPreferences.objects.filter(user=people.alice, weekly_report_enabled=False).exists()


def test_digest_links_turn_the_daily_summary_off(people) -> None:
    Client().post(_path(people.bob, "digest"))
    assert NotificationPreferences.objects.get(user=people.bob).digest_mode == DigestMode.OFF


def test_forged_or_cut_tokens_do_nothing(people) -> None:
    token = unsubscribe_token(user=people.alice, what="weekly")
    for bad in (token[:-2] + "xx", "garbage", token.replace(":", "")):
        response = Client().post(f"/notifications/unsubscribe/{bad}/")
        assert response.status_code == 404
    assert not NotificationPreferences.objects.filter(user=people.alice).exists()
