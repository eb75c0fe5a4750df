"""A channel can carry only unexpected issuance; the alert says why, escaped."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from events.services import event_record
from notifications.models import ChannelKind, EventKind, Severity
from notifications.services import channel_create, deliveries_send_due, events_dispatch

pytestmark = pytest.mark.django_db


def test_only_the_surprise_reaches_a_channel_for_unexpected_issuance(people, smtp) -> None:
    channel_create(
        team=people.team_a, kind=ChannelKind.EMAIL, name="surprises", event_kinds=[EventKind.UNEXPECTED_ISSUANCE]
    )
    event_record(team=people.team_a, kind=EventKind.CERTIFICATE_ISSUED, subject="www.shop.example", dedup_key="a")
    event_record(
        team=people.team_a,
        kind=EventKind.UNEXPECTED_ISSUANCE,
        subject="api.shop.example",
        dedup_key="b",
        severity=Severity.CRITICAL,
        payload={"reasons": ["the CAA record of shop.example allows letsencrypt.org, not CN=<b>Evil</b> CA"]},
    )
    events_dispatch()
    assert deliveries_send_due(now=timezone.now() + timedelta(minutes=5)) == {"sent": 1}
    message = smtp.messages[0]
    assert message["Subject"] == "[KeyChest] Unexpected certificate issued (CT) (Team A)"
    text = smtp.text(message)
    assert "api.shop.example" in text and "www.shop.example" not in text
    assert "why: the CAA record of shop.example allows letsencrypt.org, not CN=<b>Evil</b> CA" in text
    html = smtp.html(message)
    assert "<b>Evil</b>" not in html and "&lt;b&gt;Evil&lt;/b&gt;" in html
