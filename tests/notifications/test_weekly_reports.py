from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.utils import timezone

from events.services import event_record
from keychest.accounts.models import Membership, User
from monitors.models import WatchedDomain
from notifications import emails, reports
from notifications.models import EventKind, NotificationPreferences, ReportSend, ReportStatus
from notifications.reports import week_of, weekly_reports_send_due

pytestmark = pytest.mark.django_db
LONG_AGO = datetime(2025, 1, 1, tzinfo=UTC)


def at(*args: int) -> time_machine.travel:
    return time_machine.travel(datetime(*args, tzinfo=UTC), tick=False)


@pytest.fixture
def alice(people):
    User.objects.update(date_joined=LONG_AGO)
    people.alice.refresh_from_db()
    people.alice.timezone = "Europe/Prague"
    people.alice.save()
    WatchedDomain.objects.create(team=people.team_a, domain="example.com")
    return people.alice


def test_it_sends_at_0800_monday_in_the_users_zone_across_a_dst_change(alice, smtp) -> None:
    # Monday 23 March 2026: Prague is on CET (UTC+1), so 08:00 local is 07:00 UTC.
    with at(2026, 3, 23, 6, 59):
        assert weekly_reports_send_due(email=alice.email).sent == 0
    with at(2026, 3, 23, 7, 0):
        assert weekly_reports_send_due(email=alice.email).sent == 1
    # DST began on Sunday 29 March: 08:00 CEST is 06:00 UTC on Monday 30 March.
    with at(2026, 3, 30, 5, 59):
        assert weekly_reports_send_due(email=alice.email).sent == 0
    with at(2026, 3, 30, 6, 0):
        assert weekly_reports_send_due(email=alice.email).sent == 1
    first, second = smtp.to("alice@example.org")
    assert "Mon 23 Mar 2026 08:00 CET" in smtp.text(first)
    assert "Mon 30 Mar 2026 08:00 CEST" in smtp.text(second)
    assert first["Message-ID"] != second["Message-ID"]


def test_it_sends_once_per_week_however_often_the_scheduler_runs(alice, smtp) -> None:
    for hour in range(7, 23):
        with at(2026, 3, 23, hour, 0):
            weekly_reports_send_due(email=alice.email)
            weekly_reports_send_due(email=alice.email, force=True)
    assert len(smtp.to("alice@example.org")) == 1
    assert ReportSend.objects.get(user=alice).status == ReportStatus.SENT


class Crash(BaseException):
    """A worker dying (SIGKILL, OOM) right after it claimed the report."""


def test_two_schedulers_and_a_crash_after_the_claim_send_exactly_one_report(alice, smtp, monkeypatch) -> None:
    real_report = emails.report
    calls = {"n": 0}

    def crash_once(**kwargs):
        calls["n"] += 1
        if calls["n"] == 1:
            raise Crash
        return real_report(**kwargs)

    monkeypatch.setattr(emails, "report", crash_once)
    with at(2026, 3, 23, 7, 0), pytest.raises(Crash):
        weekly_reports_send_due()  # scheduler A claims alice's report, then dies
    with at(2026, 3, 23, 7, 1):
        assert weekly_reports_send_due(email=alice.email).sent == 0  # scheduler B: A's claim is live
    with at(2026, 3, 23, 7, 15):
        first = weekly_reports_send_due(email=alice.email)  # the claim ran out: B takes over
        second = weekly_reports_send_due(email=alice.email)  # A restarted: nothing left to do
    assert (first.sent, second.sent) == (1, 0)
    assert len(smtp.to("alice@example.org")) == 1
    row = ReportSend.objects.get(user=alice)
    assert row.status == ReportStatus.SENT and row.attempts == 2


def test_concurrent_schedulers_on_threads_send_one_report_each(people, smtp, transactional_db) -> None:
    from django.db import connection

    if connection.vendor != "postgresql":
        pytest.skip("true concurrency needs PostgreSQL (DATABASE_URL)")
    import threading

    from django.db import connections

    User.objects.update(date_joined=LONG_AGO)
    for team in (people.team_a, people.team_b):
        WatchedDomain.objects.create(team=team, domain=f"{team.pk}.example.com")
    results = []

    def run() -> None:
        try:
            results.append(weekly_reports_send_due(force=True).sent)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(results) == 3
    assert sorted(str(m["To"]) for m in smtp.messages) == [
        "alice@example.org",
        "bob@example.org",
        "charlie@example.org",
    ]


def test_smtp_down_for_an_hour_makes_the_report_late_not_lost_or_doubled(alice, smtp) -> None:
    smtp.handler.fail = True
    with at(2026, 3, 23, 7, 0):
        assert weekly_reports_send_due(email=alice.email).failed == 1
    with at(2026, 3, 23, 7, 30):
        assert weekly_reports_send_due(email=alice.email).failed == 1
    smtp.handler.fail = False
    with at(2026, 3, 23, 8, 5):
        assert weekly_reports_send_due(email=alice.email).sent == 1
    with at(2026, 3, 23, 9, 0):
        assert weekly_reports_send_due(email=alice.email).sent == 0
    assert len(smtp.to("alice@example.org")) == 1


def test_report_has_unsubscribe_headers_a_stable_message_id_and_self_contained_html(alice, smtp) -> None:
    with at(2026, 3, 23, 7, 0):
        weekly_reports_send_due(email=alice.email)
    [message] = smtp.messages
    assert message["List-Unsubscribe"].strip().startswith("<http://127.0.0.1:8000/notifications/unsubscribe/")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["Message-ID"].startswith("<weekly-2026-03-23-")
    html = smtp.html(message)
    assert "<img" not in html and "<link" not in html and "<style" not in html
    assert 'style="' in html
    assert "All good" in smtp.text(message) and "All good" in html


def test_report_covers_all_teams_grouped_by_team_with_new_ct_certificates(people, smtp) -> None:
    User.objects.update(date_joined=LONG_AGO)
    bobs_team = people.bob.memberships.exclude(team=people.team_a).get().team
    WatchedDomain.objects.create(team=people.team_a, domain="a.example")
    WatchedDomain.objects.create(team=bobs_team, domain="bob.example")
    with at(2026, 3, 22, 12, 0):
        event_record(
            team=people.team_a,
            kind=EventKind.CERTIFICATE_ISSUED,
            subject="<b>www.a.example</b>",
            dedup_key="ct:1",
            payload={"issuer": "Let's Encrypt R11", "not_after": "2026-06-20T12:00:00+00:00"},
        )
    with at(2026, 3, 23, 8, 0):
        weekly_reports_send_due(email=people.bob.email)
    [message] = smtp.to("bob@example.org")
    text, html = smtp.text(message), smtp.html(message)
    assert "=== Team A ===" in text and f"=== {bobs_team.name} ===" in text
    assert "<b>www.a.example</b> by Let's Encrypt R11" in text
    assert "&lt;b&gt;www.a.example&lt;/b&gt;" in html and "<b>www.a.example</b>" not in html


def test_all_good_reports_can_be_skipped(alice, smtp) -> None:
    NotificationPreferences.objects.create(user=alice, send_all_good=False)
    with at(2026, 3, 23, 7, 0):
        result = weekly_reports_send_due(email=alice.email)
    assert (result.sent, result.skipped) == (0, 1)
    assert smtp.messages == []


def test_users_with_nothing_watched_get_a_nudge_at_most_every_84_days(people, smtp) -> None:
    User.objects.update(date_joined=LONG_AGO)
    monday = datetime(2026, 1, 5, 8, 0, tzinfo=UTC)
    for week in range(14):
        with time_machine.travel(monday + timedelta(weeks=week), tick=False):
            weekly_reports_send_due(email="charlie@example.org")
    nudges = smtp.to("charlie@example.org")
    assert len(nudges) == 2  # week 0 and week 12 (84 days later)
    assert "Add your servers" in nudges[0]["Subject"]
    assert nudges[0]["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_accounts_younger_than_18_hours_get_no_report(alice, smtp) -> None:
    with at(2026, 3, 23, 7, 0):
        User.objects.filter(pk=alice.pk).update(date_joined=timezone.now() - timedelta(hours=17))
        assert weekly_reports_send_due(email=alice.email).considered == 0
        User.objects.filter(pk=alice.pk).update(date_joined=timezone.now() - timedelta(hours=19))
        assert weekly_reports_send_due(email=alice.email).sent == 1


def test_day_hour_and_off_switch_are_per_user(alice, smtp) -> None:
    prefs = NotificationPreferences.objects.create(user=alice, weekly_report_day=3, weekly_report_hour=17)
    with at(2026, 3, 25, 15, 59):  # Wednesday 16:59 CET
        assert weekly_reports_send_due(email=alice.email).sent == 0
    with at(2026, 3, 25, 16, 0):
        assert weekly_reports_send_due(email=alice.email).sent == 1
    prefs.weekly_report_enabled = False
    prefs.save()
    with at(2026, 4, 1, 16, 0):
        assert weekly_reports_send_due(email=alice.email).considered == 0


def test_week_is_the_monday_of_the_users_local_week() -> None:
    from zoneinfo import ZoneInfo

    sunday_night_utc = datetime(2026, 3, 29, 23, 30, tzinfo=UTC)
    assert week_of(sunday_night_utc, ZoneInfo("UTC")).isoformat() == "2026-03-23"
    assert week_of(sunday_night_utc, ZoneInfo("Europe/Prague")).isoformat() == "2026-03-30"


def test_shards_split_the_users_and_together_cover_everyone(people, smtp) -> None:
    User.objects.update(date_joined=LONG_AGO)
    for team in (people.team_a, people.team_b):
        WatchedDomain.objects.create(team=team, domain=f"{team.pk}.example.com")
    # A user belongs to the shard of their first team, so a team's members are swept together.
    first_team = {}
    for user_id, team_id in Membership.objects.order_by("team_id").values_list("user_id", "team_id"):
        first_team.setdefault(user_id, team_id)
    expected = [sorted(u.email for u in User.objects.all() if first_team[u.pk] % 2 == i) for i in range(2)]
    with at(2026, 3, 23, 9, 0):
        parts = []
        for i in range(2):
            before = len(smtp.messages)
            assert weekly_reports_send_due(shard=(i, 2)).sent == len(expected[i])
            parts.append(sorted(str(m["To"]) for m in smtp.messages[before:]))
        assert weekly_reports_send_due().sent == 0
    assert parts == expected and len(smtp.messages) == 3


def test_a_crash_right_after_the_sent_mark_never_resends(alice, smtp, monkeypatch, transactional_db) -> None:
    # transactional_db: the sweep runs in autocommit, so on PostgreSQL the mark is the real
    # relaxed-commit statement, as in a worker.
    real_finish = reports.report_finish

    def finish_then_crash(**kwargs):
        real_finish(**kwargs)
        raise Crash  # the worker dies the moment the mark is committed

    monkeypatch.setattr(reports, "report_finish", finish_then_crash)
    with at(2026, 3, 23, 7, 0), pytest.raises(Crash):
        weekly_reports_send_due(email=alice.email)
    monkeypatch.undo()
    for hour in (7, 8, 12):  # long after the claim's lease ran out
        with at(2026, 3, 23, hour, 30):
            assert weekly_reports_send_due(email=alice.email).sent == 0
            assert weekly_reports_send_due(email=alice.email, force=True).sent == 0
    assert len(smtp.to("alice@example.org")) == 1
    assert ReportSend.objects.get(user=alice).status == ReportStatus.SENT


def test_the_sent_mark_skips_the_fsync_wait_for_itself_only_and_is_visible_at_once(
    people, smtp, transactional_db
) -> None:
    import threading

    from django.db import connection, connections, transaction
    from django.test.utils import CaptureQueriesContext

    if connection.vendor != "postgresql":
        pytest.skip("synchronous_commit is PostgreSQL's")
    User.objects.update(date_joined=LONG_AGO)
    WatchedDomain.objects.create(team=people.team_a, domain="a.example.com")
    with CaptureQueriesContext(connection) as ctx:
        assert weekly_reports_send_due(force=True, email="alice@example.org").sent == 1
    relaxed = [q["sql"] for q in ctx.captured_queries if "synchronous_commit" in q["sql"]]
    assert len(relaxed) == 1
    assert relaxed[0].startswith("SET LOCAL synchronous_commit TO OFF; UPDATE notifications_reportsend")
    with connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        assert cursor.fetchone()[0] == "on"  # SET LOCAL ended with the mark's transaction
    seen = []

    def other_session() -> None:
        try:
            seen.append(ReportSend.objects.get(user__email="alice@example.org").status)
        finally:
            connections.close_all()

    thread = threading.Thread(target=other_session)
    thread.start()
    thread.join()
    assert seen == [ReportStatus.SENT]
    # Inside a caller's transaction the mark waits for the disk, so the caller's writes do too.
    row = ReportSend.objects.get(user__email="alice@example.org")
    with CaptureQueriesContext(connection) as ctx, transaction.atomic():
        assert reports.report_finish(
            user_id=row.user_id,
            kind=row.kind,
            period=row.period,
            token=row.claim_token,
            status=ReportStatus.SENT,
            wait_for_disk=False,
        )
        with connection.cursor() as cursor:
            cursor.execute("SHOW synchronous_commit")
            assert cursor.fetchone()[0] == "on"
    assert not any("synchronous_commit TO OFF" in q["sql"] for q in ctx.captured_queries)


def test_a_team_section_is_rendered_once_per_team_and_time_zone(people, smtp, monkeypatch) -> None:
    User.objects.update(date_joined=LONG_AGO, timezone="Europe/Prague")
    WatchedDomain.objects.create(team=people.team_a, domain="a.example")
    with at(2026, 3, 22, 12, 0):
        event_record(team=people.team_a, kind=EventKind.CERTIFICATE_ISSUED, subject="www.a.example", dedup_key="ct:1")
    rendered = []
    real_render = reports.team_section_render

    def counting_render(block):
        rendered.append(block["name"])
        return real_render(block)

    monkeypatch.setattr(reports, "team_section_render", counting_render)
    with at(2026, 3, 23, 8, 0):
        assert weekly_reports_send_due().sent == 2  # alice and bob (charlie watches nothing: a nudge)
    bobs_team = people.bob.memberships.exclude(team=people.team_a).get().team.name
    assert sorted(rendered) == sorted(["Team A", bobs_team])  # Team A once for alice and bob
    # Bob moves to New York: Team A is rendered for each zone, each reader sees their own times.
    User.objects.filter(pk=people.bob.pk).update(timezone="America/New_York")
    ReportSend.objects.all().delete()
    smtp.messages.clear()
    rendered.clear()
    with at(2026, 3, 23, 14, 0):
        assert weekly_reports_send_due().sent == 2
    assert sorted(rendered) == sorted(["Team A", "Team A", bobs_team])  # Team A once per zone
    assert "seen Sun 22 Mar 2026 13:00 CET" in smtp.text(smtp.to("alice@example.org")[0])
    assert "seen Sun 22 Mar 2026 08:00 EDT" in smtp.text(smtp.to("bob@example.org")[0])
