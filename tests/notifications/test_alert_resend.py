"""An alert email sent again after a crash (the SMTP server said 250, the worker died before the
delivery row said so) is recognisably the same message: one Message-ID per (delivery, recipient),
as the weekly report has one per (user, week). The fault drill counts emails by it (issue 21)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from events.services import event_record
from notifications.models import ChannelKind, Delivery, DeliveryStatus, EventKind
from notifications.services import channel_create, deliveries_send_due, events_dispatch

pytestmark = pytest.mark.django_db


def test_a_resent_alert_keeps_its_message_id_and_recipients_differ(people, smtp) -> None:
    channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone")
    event_record(team=people.team_a, kind=EventKind.CERTIFICATE_ISSUED, subject="a.example.com", dedup_key="a")
    events_dispatch()
    later = timezone.now() + timedelta(minutes=5)
    assert deliveries_send_due(now=later) == {"sent": 1}
    first = {str(m["To"]): str(m["Message-ID"]) for m in smtp.messages}
    assert set(first) == {"alice@example.org", "bob@example.org"}
    assert len(set(first.values())) == 2  # one per recipient
    delivery = Delivery.objects.get()
    assert all(str(delivery.uuid) in mid for mid in first.values())
    # The crash: the messages went out, the row never recorded it; the claim ran out.
    Delivery.objects.filter(pk=delivery.pk).update(status=DeliveryStatus.PENDING, sent_to=[], claimed_until=None)
    assert deliveries_send_due(now=later) == {"sent": 1}
    again = {str(m["To"]): str(m["Message-ID"]) for m in smtp.messages[2:]}
    assert again == first
