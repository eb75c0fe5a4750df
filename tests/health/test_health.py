"""Proof that monitoring works: heartbeat, freshness checks, canary, status endpoints, dashboard line."""

from __future__ import annotations

import datetime as dt
import json
import os
from io import StringIO

import pytest
from django.core.management import call_command
from django.db.migrations.recorder import MigrationRecorder
from django.urls import reverse
from django.utils import timezone

from certificates.models import CTLog, CTLogKind
from health import checks
from health.checks import Status
from health.models import Heartbeat
from health.tasks import canary_scan, heartbeat_task
from lab.pki import now as lab_now
from monitors.models import Server
from monitors.services import server_enrol
from notifications.models import Channel, ChannelKind, Delivery, DeliveryStatus
from tests.celery_worker import celery_worker, wait_for
from tests.conftest import make_user

pytestmark = pytest.mark.django_db

TOKEN = "status-token-for-tests-0123456789"


def _beat(at: dt.datetime) -> None:
    Heartbeat.objects.update_or_create(name=checks.PIPELINE, defaults={"at": at, "ok": True})


def _log(name: str, **fields: object) -> CTLog:
    return CTLog.objects.create(
        log_id=name, description=name, kind=CTLogKind.RFC6962, url=f"https://{name}.example/", public_key=b"k", **fields
    )


def _by_name(found: list[checks.Check]) -> dict[str, checks.Check]:
    return {c.name: c for c in found}


# --- the checks ------------------------------------------------------------------------------


def test_a_fresh_install_without_heartbeat_fails_the_pipeline_check() -> None:
    check = checks.pipeline_check(timezone.now())
    assert check.status is Status.FAIL
    assert "beat" in check.summary


def test_the_heartbeat_ages_from_ok_to_warn_to_fail() -> None:
    heartbeat_task()
    beat = Heartbeat.objects.get(name=checks.PIPELINE)
    assert beat.details["worker"]
    assert checks.pipeline_check(beat.at + dt.timedelta(seconds=30)).status is Status.OK
    assert checks.pipeline_check(beat.at + dt.timedelta(minutes=5)).status is Status.WARN
    assert checks.pipeline_check(beat.at + dt.timedelta(minutes=11)).status is Status.FAIL


def test_overdue_scans_count_only_active_servers(people) -> None:
    now = timezone.now()
    late = server_enrol(team=people.team_a, host="late.example.com")
    paused = server_enrol(team=people.team_a, host="paused.example.com")
    removed = server_enrol(team=people.team_b, host="removed.example.com")
    Server.objects.filter(pk=late.pk).update(next_scan_at=now - dt.timedelta(minutes=20))
    Server.objects.filter(pk=paused.pk).update(next_scan_at=now - dt.timedelta(days=2), paused=True)
    Server.objects.filter(pk=removed.pk).update(next_scan_at=now - dt.timedelta(days=2), removed_at=now)

    check = checks.scans_check(now)
    assert check.status is Status.WARN
    assert check.details == {"servers": 1, "overdue": 1}
    assert checks.scans_check(now + dt.timedelta(hours=2)).status is Status.FAIL
    Server.objects.filter(pk=late.pk).update(next_scan_at=now + dt.timedelta(hours=8))
    assert checks.scans_check(now).status is Status.OK


def test_ct_check_is_off_when_ingestion_is_off_and_grades_each_log(settings) -> None:
    now = timezone.now()
    settings.KEYCHEST_CT_INGEST = False
    assert checks.ct_check(now).status is Status.OFF

    settings.KEYCHEST_CT_INGEST = True
    assert checks.ct_check(now).status is Status.WARN  # nothing enabled: new certificates go unseen
    fresh = _log("fresh", last_success_at=now - dt.timedelta(seconds=20), position=10, sth_size=25)
    assert checks.ct_check(now).status is Status.OK
    assert checks.ct_check(now).details["backlog"] == 15

    ago = lambda seconds: now - dt.timedelta(seconds=seconds)  # noqa: E731
    _log("catching-up", last_success_at=ago(2), position=10, sth_size=900, behind_since=ago(40))
    _log("behind", last_success_at=ago(2), position=10, sth_size=900, behind_since=ago(61))
    _log("stale", last_success_at=ago(8 * 60))
    _log("backing-off", last_success_at=ago(120), backoff_until=now + dt.timedelta(seconds=30), last_error="HTTP 429")
    _log("backing-off-long", last_success_at=ago(40 * 60), backoff_until=now + dt.timedelta(minutes=5))
    _log("halted", last_success_at=now, halted_reason="root mismatch at 4096")
    check = checks.ct_check(now)
    assert check.status is Status.FAIL
    assert {entry["log"]: entry["status"] for entry in check.details["logs"]} == {
        "fresh": "ok",
        "catching-up": "ok",
        "behind": "fail",  # its tailer has been behind the log's head for over a minute
        "stale": "fail",  # nobody read its head for over a minute: the follower is not running
        "backing-off": "warn",
        "backing-off-long": "fail",
        "halted": "fail",
    }
    reasons = {entry["log"]: entry["reason"] for entry in check.details["logs"]}
    assert reasons["behind"] == "890 entries behind its head for 61 s"
    assert reasons["backing-off"] == "backing off: HTTP 429"
    assert "ct_ingest --follow" in reasons["stale"]
    CTLog.objects.exclude(pk=fresh.pk).update(enabled=False)
    assert checks.ct_check(now).status is Status.OK


def test_deliveries_waiting_past_their_time_warn_then_fail(people) -> None:
    now = timezone.now()
    channel = Channel.objects.create(team=people.team_a, kind=ChannelKind.EMAIL, name="mail")
    assert checks.deliveries_check(now).status is Status.OK
    Delivery.objects.create(
        team=people.team_a, channel=channel, collecting=False, send_after=now - dt.timedelta(minutes=20)
    )
    # Still collecting (the grouping window) or already sent: not waiting.
    Delivery.objects.create(
        team=people.team_a,
        channel=channel,
        collecting=False,
        status=DeliveryStatus.SENT,
        send_after=now - dt.timedelta(days=1),
    )
    check = checks.deliveries_check(now)
    assert check.status is Status.WARN
    assert check.details == {"waiting": 1}
    assert checks.deliveries_check(now + dt.timedelta(hours=2)).status is Status.FAIL


def test_deliveries_backing_off_after_failures_warn_then_fail(people) -> None:
    """An SMTP server down: each failed attempt pushes send_after forward, so the delivery is never
    "late"; the check reports the back-off from the first failed attempt instead."""
    now = timezone.now()
    channel = Channel.objects.create(team=people.team_a, kind=ChannelKind.EMAIL, name="mail")
    # Not yet tried, due in the future: nothing to report.
    Delivery.objects.create(
        team=people.team_a, channel=channel, collecting=False, send_after=now + dt.timedelta(minutes=1)
    )
    assert checks.deliveries_check(now).status is Status.OK
    Delivery.objects.create(
        team=people.team_a,
        channel=channel,
        collecting=False,
        attempts=3,
        first_attempt_at=now - dt.timedelta(minutes=7),
        send_after=now + dt.timedelta(minutes=4),
        last_error="SMTP: connection refused",
    )
    check = checks.deliveries_check(now)
    assert check.status is Status.WARN
    assert check.summary == (
        "1 alert deliveries backing off after failed attempts; the first failed 7 min ago, next try in 4 min"
    )
    assert check.details == {"retrying": 1}
    assert checks.deliveries_check(now + dt.timedelta(hours=2)).status is Status.FAIL
    Delivery.objects.filter(attempts=3).update(status=DeliveryStatus.SENT)
    assert checks.deliveries_check(now).status is Status.OK


def test_worst_treats_off_as_ok() -> None:
    assert checks.worst([Status.OK, Status.OFF]) is Status.OK
    assert checks.worst([Status.OFF, Status.WARN, Status.OK]) is Status.WARN
    assert checks.worst([Status.WARN, Status.FAIL]) is Status.FAIL


# --- the canary ------------------------------------------------------------------------------


@pytest.fixture
def canary_ca(lab, tmp_path):  # type: ignore[no-untyped-def]
    path = tmp_path / "lab-root.pem"
    path.write_text(lab.root_pem)
    return str(path)


def test_canary_on_a_healthy_server_is_ok(lab, lab_name, lab_settings, canary_ca) -> None:
    name = lab_name("canary")
    endpoint = lab.tls(lab.leaf([name]))
    lab_settings.KEYCHEST_CANARY_TARGET = f"{name}:{endpoint.port}"
    lab_settings.KEYCHEST_CANARY_CA_FILE = canary_ca

    beat = canary_scan()
    assert beat.ok, beat.summary
    assert "trusted chain" in beat.summary
    assert checks.canary_check(timezone.now()).status is Status.OK
    # Stale after three intervals without a scan.
    later = beat.at + dt.timedelta(seconds=3 * lab_settings.KEYCHEST_CANARY_INTERVAL + 1)
    assert checks.canary_check(later).status is Status.FAIL


def test_canary_fails_on_an_expired_certificate_and_an_unreachable_server(
    lab, lab_name, lab_settings, canary_ca
) -> None:
    name = lab_name("canary-expired")
    endpoint = lab.tls(
        lab.leaf([name], not_before=lab_now() - dt.timedelta(days=100), not_after=lab_now() - dt.timedelta(days=1))
    )
    lab_settings.KEYCHEST_CANARY_TARGET = f"{name}:{endpoint.port}"
    lab_settings.KEYCHEST_CANARY_CA_FILE = canary_ca
    beat = canary_scan()
    assert not beat.ok
    assert "expired" in beat.details["findings"]
    assert checks.canary_check(timezone.now()).status is Status.FAIL

    # Untrusted without the CA file: the scanner's trust store is what the canary proves.
    name = lab_name("canary-untrusted")
    endpoint = lab.tls(lab.leaf([name]))
    lab_settings.KEYCHEST_CANARY_TARGET = f"{name}:{endpoint.port}"
    lab_settings.KEYCHEST_CANARY_CA_FILE = ""
    assert not canary_scan().ok

    lab_settings.KEYCHEST_CANARY_TARGET = f"{lab_name('canary-closed', '127.0.0.1')}:9"
    beat = canary_scan()
    assert not beat.ok
    assert beat.summary.startswith("Canary ")

    lab_settings.KEYCHEST_CANARY_TARGET = "not a host name!"
    beat = canary_scan()
    assert not beat.ok
    assert "not valid" in beat.summary


def test_the_heartbeat_task_runs_the_canary_only_when_due(lab, lab_name, lab_settings, canary_ca) -> None:
    name = lab_name("canary-due")
    endpoint = lab.tls(lab.leaf([name]))
    lab_settings.KEYCHEST_CANARY_TARGET = f"{name}:{endpoint.port}"
    lab_settings.KEYCHEST_CANARY_CA_FILE = canary_ca
    heartbeat_task()
    first = Heartbeat.objects.get(name=checks.CANARY).at
    heartbeat_task()
    assert Heartbeat.objects.get(name=checks.CANARY).at == first  # not due again yet
    Heartbeat.objects.filter(name=checks.CANARY).update(at=first - dt.timedelta(seconds=301))
    heartbeat_task()
    assert Heartbeat.objects.get(name=checks.CANARY).at > first


def test_canary_check_is_off_without_a_target(settings) -> None:
    settings.KEYCHEST_CANARY_TARGET = ""
    assert checks.canary_check(timezone.now()).status is Status.OFF


# --- the endpoints and the command -----------------------------------------------------------


def test_status_json_needs_staff_or_the_token(client, people, alice_client, settings) -> None:
    settings.KEYCHEST_STATUS_TOKEN = TOKEN
    settings.KEYCHEST_CT_INGEST = False
    settings.KEYCHEST_CANARY_TARGET = ""
    url = reverse("status_json")
    assert client.get(url).status_code == 401
    assert alice_client.get(url).status_code == 401  # a customer is not an operator
    assert client.get(url, HTTP_AUTHORIZATION="Bearer wrong").status_code == 401
    settings.KEYCHEST_STATUS_TOKEN = ""
    assert client.get(url, HTTP_AUTHORIZATION="Bearer ").status_code == 401  # no token configured: none matches
    settings.KEYCHEST_STATUS_TOKEN = TOKEN

    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 503  # no heartbeat yet
    body = response.json()
    assert body["status"] == "fail"
    assert {c["name"] for c in body["checks"]} == {
        "pipeline",
        "scans",
        "ct",
        "deliveries",
        "reports",
        "registrations",
        "canary",
    }
    assert "no-cache" in response["Cache-Control"]

    _beat(timezone.now())
    response = client.get(url, HTTP_AUTHORIZATION=f"Bearer {TOKEN}")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"

    people.alice.is_staff = True
    people.alice.save(update_fields=["is_staff"])
    assert alice_client.get(url).status_code == 200


def test_status_page_is_for_staff_and_escapes_remote_text(client, people, alice_client, settings) -> None:
    settings.KEYCHEST_CT_INGEST = True
    _log("evil", last_success_at=timezone.now(), halted_reason="<script>alert(1)</script>")
    url = reverse("status_page")
    assert client.get(url).status_code == 404
    assert alice_client.get(url).status_code == 404
    people.alice.is_staff = True
    people.alice.save(update_fields=["is_staff"])
    page = alice_client.get(url).content.decode()
    assert 'data-testid="check-ct"' in page
    assert "<script>alert(1)</script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


def test_monitoring_status_command_exit_codes(settings) -> None:
    settings.KEYCHEST_CT_INGEST = False
    settings.KEYCHEST_CANARY_TARGET = ""
    out = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("monitoring_status", stdout=out)
    assert exited.value.code == 2
    assert "FAIL  pipeline" in out.getvalue()

    _beat(timezone.now())
    out = StringIO()
    with pytest.raises(SystemExit) as exited:
        call_command("monitoring_status", "--json", stdout=out)
    assert exited.value.code == 0
    assert json.loads(out.getvalue())["status"] == "ok"

    _beat(timezone.now() - dt.timedelta(minutes=5))
    with pytest.raises(SystemExit) as exited:
        call_command("monitoring_status", stdout=StringIO())
    assert exited.value.code == 1


# --- what a team sees --------------------------------------------------------------------------


def test_dashboard_shows_the_teams_own_freshness_only(people, alice_client, settings) -> None:
    settings.KEYCHEST_CT_INGEST = True
    now = timezone.now()
    mine = server_enrol(team=people.team_a, host="mine.example.com")
    theirs = server_enrol(team=people.team_b, host="theirs.example.com")
    Server.objects.filter(pk=mine.pk).update(last_scan_at=now - dt.timedelta(minutes=3))
    Server.objects.filter(pk=theirs.pk).update(next_scan_at=now - dt.timedelta(hours=3))
    _log("current", last_success_at=now - dt.timedelta(seconds=30))

    # An installation older than the heartbeat's grace (a fresh one: test_fresh_start_...).
    MigrationRecorder.Migration.objects.update(applied=now - dt.timedelta(days=1))
    page = alice_client.get(reverse("dashboard")).content.decode()
    assert 'data-testid="freshness"' in page
    assert "no scan overdue" in page  # team B's overdue server is not counted for team A
    assert "Certificate Transparency read" in page
    assert 'data-testid="pipeline-down"' in page  # no heartbeat yet
    assert "have never run here" in page

    _beat(now)
    Server.objects.filter(pk=mine.pk).update(next_scan_at=now - dt.timedelta(hours=1))
    page = alice_client.get(reverse("dashboard")).content.decode()
    assert "1 scan overdue" in page
    assert 'data-testid="pipeline-down"' not in page


# --- the real pipeline ---------------------------------------------------------------------


@pytest.mark.celery
@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
@pytest.mark.skipif(not os.environ.get("REDIS_URL"), reason="REDIS_URL is not set: no broker for a real worker")
def test_the_heartbeat_arrives_through_a_real_worker() -> None:
    make_user("someone@example.org")
    with celery_worker() as worker:
        heartbeat_task.delay()
        wait_for(lambda: Heartbeat.objects.filter(name=checks.PIPELINE).exists(), worker)
    assert checks.pipeline_check(timezone.now()).status is Status.OK


def test_late_registration_checks_warn_then_fail_for_watched_domains_only(people) -> None:
    from monitors.models import DomainRegistration, RegistrationWatch

    now = timezone.now()
    watched = DomainRegistration.objects.create(domain="watched.example", next_check_at=now + dt.timedelta(hours=40))
    RegistrationWatch.objects.create(team=people.team_a, registration=watched)
    # Nobody watches this one any more: it is not checked, and not late.
    DomainRegistration.objects.create(domain="orphan.example", next_check_at=now - dt.timedelta(days=30))
    assert checks.registrations_check(now).status is Status.OK
    DomainRegistration.objects.filter(pk=watched.pk).update(next_check_at=now - dt.timedelta(hours=8))
    check = checks.registrations_check(now)
    assert check.status is Status.WARN and check.details == {"late": 1}
    assert checks.registrations_check(now + dt.timedelta(days=3)).status is Status.FAIL


def test_a_fresh_start_shows_no_false_alarm_and_a_stale_beat_says_since_when(people, alice_client) -> None:
    """Issue 14 item 8: the first minute of `make run` on a new database is not an outage."""
    now = timezone.now()
    MigrationRecorder.Migration.objects.update(applied=now - dt.timedelta(minutes=1))
    page = alice_client.get(reverse("dashboard")).content.decode()
    assert 'data-testid="pipeline-down"' not in page  # no heartbeat yet, but just installed
    MigrationRecorder.Migration.objects.update(applied=now - dt.timedelta(minutes=11))
    assert 'data-testid="pipeline-down"' in alice_client.get(reverse("dashboard")).content.decode()
    _beat(now - dt.timedelta(minutes=30))
    page = alice_client.get(reverse("dashboard")).content.decode()
    assert "have not run since" in page and "30 minutes ago" in page
    _beat(now)
    assert 'data-testid="pipeline-down"' not in alice_client.get(reverse("dashboard")).content.decode()
