from __future__ import annotations

from datetime import UTC, datetime

import pytest
import time_machine

from events.services import event_record
from keychest.accounts.models import User
from notifications.digests import digests_send_due
from notifications.models import ChannelKind, DigestMode, EventKind, NotificationPreferences
from notifications.services import channel_create

pytestmark = pytest.mark.django_db


def test_daily_summary_collects_the_days_alerts_once(people, smtp) -> None:
    User.objects.update(date_joined=datetime(2025, 1, 1, tzinfo=UTC))
    channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone")
    NotificationPreferences.objects.create(
        user=people.bob, digest_mode=DigestMode.DAILY, alert_kinds=[EventKind.SERVER_DOWN], weekly_report_hour=9
    )
    with time_machine.travel(datetime(2026, 3, 10, 15, 0, tzinfo=UTC), tick=False):
        event_record(team=people.team_a, kind=EventKind.SERVER_DOWN, subject="a.example:443", dedup_key="d1")
        event_record(team=people.team_a, kind=EventKind.CERTIFICATE_ISSUED, subject="b.example", dedup_key="i1")
    with time_machine.travel(datetime(2026, 3, 11, 8, 59, tzinfo=UTC), tick=False):
        assert digests_send_due() == {"not-due": 1}
    with time_machine.travel(datetime(2026, 3, 11, 9, 0, tzinfo=UTC), tick=False):
        assert digests_send_due() == {"sent": 1}
        assert digests_send_due() == {"not-claimed": 1}
    [message] = smtp.messages
    assert message["To"] == "bob@example.org" and "1 alert" in message["Subject"]
    text = smtp.text(message)
    assert "a.example:443" in text and "b.example" not in text
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
