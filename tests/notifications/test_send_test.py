"""Send test on an email channel: every member gets it whatever their kinds; the page's attempt
row and delivery status tell the same story (issue 14 item 1)."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import timezone

from notifications.models import ChannelKind, Delivery, DeliveryStatus, DigestMode, EventKind, NotificationPreferences
from notifications.services import channel_create, channel_send_test, delivery_send

pytestmark = pytest.mark.django_db


def _send_test(channel) -> Delivery:  # type: ignore[no-untyped-def]
    delivery = channel_send_test(channel=channel)
    delivery_send(delivery_id=delivery.pk, now=timezone.now())
    delivery.refresh_from_db()
    return delivery


def test_send_test_reaches_every_member_whatever_their_kinds_and_digest_mode(people, smtp) -> None:
    channel = channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone")
    # alice wants every kind immediately (the defaults); bob only one kind, in the daily digest.
    NotificationPreferences.objects.create(user=people.alice, alert_kinds=list(EventKind.values))
    NotificationPreferences.objects.create(
        user=people.bob, alert_kinds=[EventKind.SERVER_DOWN], digest_mode=DigestMode.DAILY
    )
    delivery = _send_test(channel)
    assert delivery.status == DeliveryStatus.SENT
    assert sorted(str(m["To"]) for m in smtp.messages) == ["alice@example.org", "bob@example.org"]
    assert "This is a test message" in smtp.text(smtp.messages[0])


def test_send_test_leaves_out_members_who_switched_alert_emails_off(people, smtp) -> None:
    channel = channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone")
    NotificationPreferences.objects.create(user=people.bob, digest_mode=DigestMode.OFF)
    assert _send_test(channel).status == DeliveryStatus.SENT
    assert [str(m["To"]) for m in smtp.messages] == ["alice@example.org"]


def test_a_failed_test_reads_failed_on_the_attempt_row_and_the_delivery(people, smtp, alice_client: Client) -> None:
    channel = channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone")
    for user in (people.alice, people.bob):
        NotificationPreferences.objects.create(user=user, digest_mode=DigestMode.OFF)
    delivery = _send_test(channel)
    assert delivery.status == DeliveryStatus.FAILED and "switched alert emails off" in delivery.last_error
    page = alice_client.get(f"/notifications/channels/{channel.uuid}/").content.decode()
    attempts = page.split('data-testid="attempts"')[1]
    assert "failed (test, not retried)" in attempts and "will retry" not in attempts
    assert "Failed (test)" in page
    assert smtp.messages == []
