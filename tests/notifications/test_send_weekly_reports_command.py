from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import call_command

from keychest.accounts.models import User
from monitors.models import WatchedDomain

pytestmark = pytest.mark.django_db


@pytest.fixture
def old_accounts(people):
    User.objects.update(date_joined="2025-01-01T00:00:00Z")
    WatchedDomain.objects.create(team=people.team_a, domain="example.com")
    return people


def test_dry_run_prints_and_sends_nothing(old_accounts, smtp) -> None:
    out = StringIO()
    call_command("send_weekly_reports", "--now", "--dry-run", stdout=out)
    lines = out.getvalue().splitlines()
    assert any(line.startswith("alice@example.org: weekly_report") for line in lines)
    assert any(line.startswith("charlie@example.org: nudge") for line in lines)
    assert smtp.messages == []


def test_now_sends_this_weeks_reports_once(old_accounts, smtp) -> None:
    out = StringIO()
    call_command("send_weekly_reports", "--now", "--user", "alice@example.org", stdout=out)
    assert json.loads(out.getvalue().splitlines()[-1])["sent"] == 1
    call_command("send_weekly_reports", "--now", "--user", "alice@example.org", stdout=StringIO())
    assert [str(m["To"]) for m in smtp.messages] == ["alice@example.org"]
