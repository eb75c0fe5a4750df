from __future__ import annotations

import hashlib
import hmac
import json
from datetime import timedelta

import pytest
from django.utils import timezone

from events.services import event_record
from notifications.models import (
    Channel,
    ChannelKind,
    Delivery,
    DeliveryAttempt,
    DeliveryStatus,
    DigestMode,
    EventKind,
    NotificationPreferences,
)
from notifications.services import channel_create, deliveries_send_due, delivery_send, events_dispatch
from tests.notifications.conftest import outside_address_confirmed

pytestmark = pytest.mark.django_db


def _record(team, n: int = 1, kind: str = EventKind.CERTIFICATE_ISSUED, prefix: str = "host"):
    for i in range(n):
        event_record(team=team, kind=kind, subject=f"{prefix}{i}.example.com", dedup_key=f"{kind}:{prefix}{i}")


def _send_all(later: timedelta = timedelta(minutes=5)) -> dict[str, int]:
    events_dispatch()
    return deliveries_send_due(now=timezone.now() + later)


def test_it_signs_webhook_bodies_with_the_channel_secret(people, webhook) -> None:
    channel = channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="ops", url=webhook.url)
    _record(people.team_a, 2)
    assert _send_all() == {"sent": 1}
    [request] = webhook.requests
    expected = hmac.new(channel.secret.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-keychest-signature"] == f"sha256={expected}"
    document = request.json()
    assert document["type"] == "keychest.alerts"
    assert request.headers["idempotency-key"] == document["delivery_id"]
    assert {e["subject"] for e in document["events"]} == {"host0.example.com", "host1.example.com"}
    assert all(e["idempotency_key"] == e["id"] for e in document["events"])
    # A receiver holding a different secret rejects the body.
    wrong = hmac.new(b"not-the-secret", request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-keychest-signature"] != f"sha256={wrong}"


def test_a_burst_of_events_becomes_one_message(people, webhook, smtp) -> None:
    channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="ops", url=webhook.url)
    channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone")
    _record(people.team_a, 300, prefix="cdn")
    events_dispatch()
    _record(people.team_a, 40, kind=EventKind.CERTIFICATE_CHANGED, prefix="edge")  # still in the window
    assert _send_all() == {"sent": 2}
    assert len(webhook.requests) == 1
    assert len(webhook.requests[0].json()["events"]) == 340
    # Email: one message per member (alice, bob), each listing the burst once.
    assert sorted(str(m["To"]) for m in smtp.messages) == ["alice@example.org", "bob@example.org"]
    text = smtp.text(smtp.messages[0])
    assert "340 alerts for Team A" in smtp.messages[0]["Subject"]
    assert "and 290 more" in text


def test_an_event_is_never_delivered_twice(people, webhook) -> None:
    channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="ops", url=webhook.url)
    _record(people.team_a, 1)
    _record(people.team_a, 1)  # the same dedup key: no new event
    assert _send_all() == {"sent": 1}
    assert _send_all(timedelta(minutes=10)) == {}
    assert len(webhook.requests) == 1


def test_two_workers_cannot_both_send_one_delivery(people, webhook) -> None:
    channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="ops", url=webhook.url)
    _record(people.team_a, 1)
    [delivery_id] = events_dispatch()
    later = timezone.now() + timedelta(minutes=2)
    assert delivery_send(delivery_id=delivery_id, now=later) == "sent"
    assert delivery_send(delivery_id=delivery_id, now=later) == "not-due-or-claimed"
    assert len(webhook.requests) == 1


def test_a_crash_after_the_claim_is_taken_over_when_the_lease_runs_out(people, webhook, settings) -> None:
    channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="ops", url=webhook.url)
    _record(people.team_a, 1)
    [delivery_id] = events_dispatch()
    now = timezone.now() + timedelta(minutes=2)
    # A worker claims and dies before sending (its claim is the compare-and-set UPDATE).
    from notifications.services import _claim

    assert _claim(delivery_id, now)
    assert deliveries_send_due(now=now + timedelta(seconds=30)) == {}
    assert webhook.requests == []
    after_lease = now + timedelta(seconds=settings.KEYCHEST_NOTIFY_CLAIM_SECONDS + 1)
    assert deliveries_send_due(now=after_lease) == {"sent": 1}
    assert len(webhook.requests) == 1


def test_failures_back_off_exponentially_then_disable_the_channel_and_tell_owners(people, webhook, smtp) -> None:
    channel = channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="ops", url=webhook.url)
    webhook.status = 503
    _record(people.team_a, 1)
    [delivery_id] = events_dispatch()
    now = timezone.now() + timedelta(minutes=2)
    waits = []
    for _ in range(30):
        outcome = delivery_send(delivery_id=delivery_id, now=now)
        delivery = Delivery.objects.get(pk=delivery_id)
        if outcome != "retry":
            break
        waits.append((delivery.send_after - now).total_seconds())
        now = delivery.send_after
    assert outcome == "failed"
    assert waits[0] < 100 and waits[1] > waits[0] * 1.5 and waits[3] > waits[2] * 1.5
    first = delivery.first_attempt_at
    assert timedelta(hours=20) < now - first <= timedelta(hours=24)
    assert DeliveryAttempt.objects.filter(delivery_id=delivery_id, ok=False).count() == len(waits) + 1
    channel.refresh_from_db()
    assert not channel.enabled and "24 hours" in channel.disabled_reason
    # The owners' email goes through the task queue; run what it would run.
    from notifications.services import channel_disabled_notify_owners

    channel_disabled_notify_owners(channel_id=channel.pk)
    [message] = smtp.messages
    assert message["To"] == "alice@example.org"
    assert "disabled" in message["Subject"]


def test_a_permanent_error_disables_the_channel_at_once(people, webhook, django_capture_on_commit_callbacks) -> None:
    channel = channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="ops", url=webhook.url)
    webhook.status = 410
    _record(people.team_a, 1)
    [delivery_id] = events_dispatch()
    assert delivery_send(delivery_id=delivery_id, now=timezone.now() + timedelta(minutes=2)) == "failed"
    channel.refresh_from_db()
    assert not channel.enabled and "HTTP 410" in channel.disabled_reason


def test_private_targets_are_refused_unless_allowed(people, webhook, settings) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    channel = channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="ops", url=webhook.url)
    _record(people.team_a, 1)
    assert _send_all() == {"failed": 1}
    assert webhook.requests == []
    attempt = DeliveryAttempt.objects.get()
    assert attempt.permanent and "non-public" in attempt.error
    channel.refresh_from_db()
    assert not channel.enabled


def test_slack_messages_escape_certificate_names(people, webhook) -> None:
    channel_create(team=people.team_a, kind=ChannelKind.SLACK, name="chat", url=webhook.url)
    event_record(
        team=people.team_a, kind=EventKind.CERTIFICATE_ISSUED, subject="<!channel> evil.example", dedup_key="x"
    )
    assert _send_all() == {"sent": 1}
    text = webhook.requests[0].json()["text"]
    assert "&lt;!channel&gt; evil.example" in text and "<!channel>" not in text


def test_the_channel_rate_limit_holds_messages_back(people, webhook) -> None:
    channel = channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="ops", url=webhook.url)
    Channel.objects.filter(pk=channel.pk).update(rate_limit_per_hour=1, grouping_seconds=0)
    _record(people.team_a, 1, prefix="a")
    assert _send_all(timedelta(seconds=1)) == {"sent": 1}
    _record(people.team_a, 1, prefix="b")
    assert _send_all(timedelta(seconds=2)) == {"rate-limited": 1}
    assert len(webhook.requests) == 1
    waiting = Delivery.objects.get(status=DeliveryStatus.PENDING)
    assert waiting.attempts == 0 and waiting.send_after > timezone.now()


def test_email_alerts_follow_each_members_kinds_and_digest_mode(people, smtp) -> None:
    outside_address_confirmed(people.team_a, "noc@example.net")
    channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone", email_addresses="noc@example.net")
    NotificationPreferences.objects.create(user=people.alice, alert_kinds=[EventKind.SERVER_DOWN])
    NotificationPreferences.objects.create(user=people.bob, digest_mode=DigestMode.DAILY)
    _record(people.team_a, 1, kind=EventKind.SERVER_DOWN, prefix="down")
    _record(people.team_a, 1, kind=EventKind.CERTIFICATE_ISSUED, prefix="new")
    assert _send_all() == {"sent": 1}
    by_to = {str(m["To"]): m for m in smtp.messages}
    assert set(by_to) == {"alice@example.org", "noc@example.net"}  # bob reads the daily digest
    alice = smtp.text(by_to["alice@example.org"])
    assert "down0.example.com" in alice and "new0.example.com" not in alice
    assert "new0.example.com" in smtp.text(by_to["noc@example.net"])


def test_alert_html_escapes_names_and_keeps_them_out_of_headers(people, smtp) -> None:
    channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone")
    event_record(
        team=people.team_a,
        kind=EventKind.CERTIFICATE_ISSUED,
        subject="<script>alert(1)</script>\r\nBcc: victim@example.com",
        dedup_key="evil",
    )
    assert _send_all() == {"sent": 1}
    message = smtp.messages[0]
    assert "victim" not in str(message["Subject"]) and message["Bcc"] is None
    html = smtp.html(message)
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_smtp_down_makes_alerts_late_not_lost(people, smtp) -> None:
    channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="everyone")
    _record(people.team_a, 1)
    smtp.handler.fail = True
    assert _send_all() == {"retry": 1}
    smtp.handler.fail = False
    assert deliveries_send_due(now=timezone.now() + timedelta(hours=1)) == {"sent": 1}
    assert sorted(str(m["To"]) for m in smtp.messages) == ["alice@example.org", "bob@example.org"]


def test_send_test_reaches_the_webhook(people, webhook, django_capture_on_commit_callbacks, settings) -> None:
    from notifications.services import channel_send_test

    settings.CELERY_TASK_ALWAYS_EAGER = True
    from keychest.celery import app

    app.conf.task_always_eager = True
    try:
        channel = channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="ops", url=webhook.url)
        with django_capture_on_commit_callbacks(execute=True):
            channel_send_test(channel=channel)
    finally:
        app.conf.task_always_eager = False
    [request] = webhook.requests
    assert request.json()["type"] == "keychest.test"
    assert json.loads(request.body)["events"] == []


def test_a_finding_and_its_specific_event_become_one_line(people, webhook) -> None:
    channel_create(team=people.team_a, kind=ChannelKind.SLACK, name="chat", url=webhook.url)
    payload = {"code": "ips_disagree", "finding": "f-1", "address": ""}
    event_record(
        team=people.team_a, kind=EventKind.FINDING_OPENED, subject="a.example:443", dedup_key="f1o", payload=payload
    )
    event_record(
        team=people.team_a, kind=EventKind.IPS_DISAGREE, subject="a.example:443", dedup_key="f1s", payload=payload
    )
    event_record(
        team=people.team_a,
        kind=EventKind.FINDING_OPENED,
        subject="b.example:443",
        dedup_key="f2o",
        payload={"code": "hostname_mismatch", "finding": "f-2"},
    )
    assert _send_all() == {"sent": 1}
    text = webhook.requests[0].json()["text"]
    assert text.count("a.example:443") == 1 and "Addresses serve different certificates" in text
    assert "Problem found: hostname mismatch: `b.example:443`" in text


def test_expiry_findings_are_named_as_expiring_certificates(people, webhook) -> None:
    channel_create(team=people.team_a, kind=ChannelKind.SLACK, name="chat", url=webhook.url)
    event_record(
        team=people.team_a,
        kind=EventKind.FINDING_OPENED,
        subject="shop.example:443",
        dedup_key="due",
        payload={"code": "renewal_overdue", "finding": "f-9"},
    )
    assert _send_all() == {"sent": 1}
    assert "Certificate expiring (renewal overdue): `shop.example:443`" in webhook.requests[0].json()["text"]


def test_channels_filtering_on_expiring_get_the_scanners_expiry_findings(people, webhook) -> None:
    channel_create(
        team=people.team_a,
        kind=ChannelKind.WEBHOOK,
        name="expiry only",
        url=webhook.url,
        event_kinds=[EventKind.CERTIFICATE_EXPIRING],
    )
    for code in ("renewal_due", "hostname_mismatch"):
        event_record(
            team=people.team_a,
            kind=EventKind.FINDING_OPENED,
            subject=f"{code}.example:443",
            dedup_key=code,
            payload={"code": code, "finding": code},
        )
    assert _send_all() == {"sent": 1}
    assert [e["subject"] for e in webhook.requests[0].json()["events"]] == ["renewal_due.example:443"]
