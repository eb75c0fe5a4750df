"""Domain registration expiry in notifications: the weekly report's section and the alert, over real SMTP."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from keychest.accounts.models import User
from monitors.models import WatchedDomain
from monitors.registrations import registration_check_now, registrations_sync
from notifications.forms import NotificationPreferencesForm
from notifications.models import ChannelKind, EventKind
from notifications.reports import weekly_reports_send_due
from notifications.services import channel_create, deliveries_send_due, events_dispatch, preferences_update

pytestmark = pytest.mark.django_db
LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)
MONDAY_0800_PRAGUE = datetime(2026, 3, 23, 7, 0, tzinfo=UTC)


def at(when: datetime) -> time_machine.travel:
    return time_machine.travel(when, tick=False)


@pytest.fixture
def watching(people, rdap_lab):
    """Team A watches shop.example (expiring in 20 days); team B watches far.test (expiring in a year)."""
    User.objects.update(date_joined=LONG_AGO, timezone="Europe/Prague")
    WatchedDomain.objects.create(team=people.team_a, domain="www.shop.example")
    WatchedDomain.objects.create(team=people.team_b, domain="far.test")
    rdap_lab.register("shop.example", expires_at=MONDAY_0800_PRAGUE + timedelta(days=20), registrar="Lab <Names> & Co")
    rdap_lab.register("far.test", expires_at=MONDAY_0800_PRAGUE + timedelta(days=365))
    with at(MONDAY_0800_PRAGUE - timedelta(hours=2)):
        registrations_sync()
        registration_check_now(name="shop.example")
        registration_check_now(name="far.test")
    return people


def test_the_weekly_report_lists_registrations_expiring_within_84_days(watching, smtp) -> None:
    with at(MONDAY_0800_PRAGUE):
        assert weekly_reports_send_due(email="alice@example.org").sent == 1
        assert weekly_reports_send_due(email="charlie@example.org").sent == 1
    [alice] = smtp.to("alice@example.org")
    text, html = smtp.text(alice), smtp.html(alice)
    assert "Domain registrations expiring:" in text
    assert "  - shop.example expires in 20 days (Sun 12 Apr 2026 09:00 CEST), renew with Lab <Names> & Co" in text
    assert "Domain registrations expiring</h3>" in html and "shop.example — in 20 days" in html
    # The registrar's name comes from a remote server: escaped in HTML.
    assert "renew with Lab &lt;Names&gt; &amp; Co" in html and "<Names>" not in html
    # Charlie's team watches only a domain that is far from expiring, and nothing of team A's.
    [charlie] = smtp.to("charlie@example.org")
    assert "Domain registrations expiring" not in smtp.text(charlie)
    assert "shop.example" not in smtp.text(charlie) and "shop.example" not in smtp.html(charlie)


def test_the_threshold_alert_reaches_the_teams_email_channel(watching, smtp) -> None:
    channel_create(team=watching.team_a, kind=ChannelKind.EMAIL, name="everyone")
    channel_create(team=watching.team_b, kind=ChannelKind.EMAIL, name="everyone")
    with at(MONDAY_0800_PRAGUE):
        events_dispatch()
        assert deliveries_send_due(now=MONDAY_0800_PRAGUE + timedelta(minutes=5)) == {"sent": 1}
    assert sorted(str(m["To"]) for m in smtp.messages) == ["alice@example.org", "bob@example.org"]
    message = smtp.to("alice@example.org")[0]
    assert "Domain registration expiring" in message["Subject"]
    assert "- Domain registration expiring: shop.example expires 2026-04-12 (20 days left) (warning" in smtp.text(
        message
    )


def test_people_can_turn_the_kind_off_in_their_preferences(watching, smtp) -> None:
    preferences_update(user=watching.bob, alert_kinds=[EventKind.CERTIFICATE_EXPIRING])
    assert ("domain_expiring", "Domain registration expiring") in NotificationPreferencesForm().fields[
        "alert_kinds"
    ].choices
    channel_create(team=watching.team_a, kind=ChannelKind.EMAIL, name="everyone")
    with at(MONDAY_0800_PRAGUE):
        events_dispatch()
        deliveries_send_due(now=MONDAY_0800_PRAGUE + timedelta(minutes=5))
    assert [str(m["To"]) for m in smtp.messages] == ["alice@example.org"]
