"""The whole path with a real Celery worker on Redis: event → dispatch → delivery → SMTP and
webhook; and a weekly report sent by the beat task. Needs REDIS_URL and PostgreSQL."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from django.db import connection, transaction

from keychest.accounts.models import User
from monitors.models import WatchedDomain
from notifications.events import event_record
from notifications.models import ChannelKind, EventKind, NotificationPreferences, ReportSend, ReportStatus
from notifications.services import channel_create

pytestmark = [pytest.mark.celery, pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def worker(smtp, webhook):
    if not os.environ.get("REDIS_URL"):
        pytest.skip("REDIS_URL is not set: no broker for a real worker")
    if connection.vendor != "postgresql":
        pytest.skip("the worker process needs the test database on PostgreSQL (DATABASE_URL)")
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "keychest.settings",
        "DEBUG": "0",
        "SECRET_KEY": "celery-pipeline-test-secret-key-0123456789abcdefghijklmnop",
        "ALLOWED_HOSTS": "127.0.0.1",
        "DATABASE_URL": f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "EMAIL_URL": f"smtp://127.0.0.1:{smtp.port}",
        "KEYCHEST_ALLOW_PRIVATE_TARGETS": "1",
        "KEYCHEST_CACHE_PREFIX": f"kc-celery-test-{os.getpid()}",
    }
    from keychest.celery import app

    app.control.purge()  # stale messages of earlier runs; before the worker starts, not racing it
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "keychest", "worker", "--pool", "solo", "-l", "warning"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    yield process
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()


def _wait_for(condition, worker, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if worker.poll() is not None:
            raise AssertionError(f"the worker died: {worker.stderr.read().decode()[-3000:]}")
        time.sleep(0.2)
    worker.terminate()
    raise AssertionError(f"timed out waiting for the worker: {worker.communicate(timeout=20)[1].decode()[-3000:]}")


def test_a_real_worker_delivers_alerts_and_the_weekly_report(people, smtp, webhook, worker) -> None:
    User.objects.update(date_joined=datetime(2025, 1, 1, tzinfo=UTC))
    NotificationPreferences.objects.create(user=people.alice, weekly_report_day=1, weekly_report_hour=0)
    WatchedDomain.objects.create(team=people.team_a, domain="example.com")
    email = channel_create(team=people.team_a, kind=ChannelKind.EMAIL, name="alice", email_addresses="ops@example.net")
    email.email_all_members = False
    email.grouping_seconds = 0
    email.save()
    channel_create(team=people.team_a, kind=ChannelKind.WEBHOOK, name="hook", url=webhook.url, grouping_seconds=0)
    with transaction.atomic():  # committed: on_commit asks the worker to dispatch at once
        event_record(team=people.team_a, kind=EventKind.SERVER_DOWN, subject="shop.example.com:443", dedup_key="d1")
    _wait_for(lambda: smtp.to("ops@example.net") and webhook.requests, worker)
    assert webhook.requests[0].json()["events"][0]["subject"] == "shop.example.com:443"

    from notifications.tasks import weekly_reports_send_due_task

    weekly_reports_send_due_task.delay()
    _wait_for(lambda: smtp.to("alice@example.org"), worker)
    _wait_for(lambda: ReportSend.objects.filter(user=people.alice, status=ReportStatus.SENT).exists(), worker)
    weekly_reports_send_due_task.delay()  # a second run sends nothing more
    time.sleep(2)
    assert len(smtp.to("alice@example.org")) == 1
    assert len(smtp.to("ops@example.net")) == 1 and len(webhook.requests) == 1
