"""The whole path with a real Celery worker on Redis: event → dispatch → delivery → SMTP and
webhook; and a weekly report sent by the beat task. Needs REDIS_URL and PostgreSQL."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest
from django.db import transaction

from events.services import event_record
from keychest.accounts.models import User
from monitors.models import WatchedDomain
from notifications.models import ChannelKind, EventKind, NotificationPreferences, ReportSend, ReportStatus
from notifications.services import channel_create
from tests.celery_worker import celery_worker, wait_for
from tests.notifications.conftest import outside_address_confirmed

pytestmark = [pytest.mark.celery, pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def worker(smtp, webhook):
    with celery_worker(
        {"EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}", "KEYCHEST_ALLOW_PRIVATE_TARGETS": "1"}
    ) as process:
        yield process


def test_a_real_worker_delivers_alerts_and_the_weekly_report(people, smtp, webhook, worker) -> None:
    User.objects.update(date_joined=datetime(2025, 1, 1, tzinfo=UTC))
    NotificationPreferences.objects.create(user=people.alice, weekly_report_day=1, weekly_report_hour=0)
    WatchedDomain.objects.create(team=people.team_a, domain="example.com")
    outside_address_confirmed(people.team_a, "ops@example.net")
    email = channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="alice", email_addresses="ops@example.net")
    email.email_all_members = False
    email.grouping_seconds = 0
    email.save()
    channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="hook", url=webhook.url, grouping_seconds=0)
    with transaction.atomic():  # committed: on_commit asks the worker to dispatch at once
        event_record(team=people.team_a, kind=EventKind.SERVER_DOWN, subject="shop.example.com:443", dedup_key="d1")
    wait_for(lambda: smtp.to("ops@example.net") and webhook.requests, worker)
    assert webhook.requests[0].json()["events"][0]["subject"] == "shop.example.com:443"

    from notifications.tasks import weekly_reports_send_due_task

    weekly_reports_send_due_task.delay()
    wait_for(lambda: smtp.to("alice@example.org"), worker)
    wait_for(lambda: ReportSend.objects.filter(user=people.alice, status=ReportStatus.SENT).exists(), worker)
    weekly_reports_send_due_task.delay()  # a second run sends nothing more
    time.sleep(2)
    assert len(smtp.to("alice@example.org")) == 1
    assert len(smtp.to("ops@example.net")) == 1 and len(webhook.requests) == 1
