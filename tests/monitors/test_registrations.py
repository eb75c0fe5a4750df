"""Domain registration expiry (monitors/registrations.py) end to end against the lab RDAP server."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.management import call_command
from django.utils import timezone

from monitors import tasks
from monitors.models import (
    DomainRegistration,
    RdapServer,
    RegistrationStatus,
    RegistrationWatch,
    Server,
    WatchedDomain,
)
from monitors.registrations import (
    RdapConfig,
    registration_check_now,
    registration_store,
    registrations_check_due,
    registrations_sync,
)
from notifications.models import Event, EventKind

pytestmark = pytest.mark.django_db
T0 = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)


def at(when: datetime) -> time_machine.travel:
    return time_machine.travel(when, tick=False)


def reg(domain: str) -> DomainRegistration:
    return DomainRegistration.objects.get(domain=domain)


def expiring_events(team=None) -> list[Event]:
    qs = Event.objects.filter(kind=EventKind.DOMAIN_EXPIRING).order_by("occurred_at", "id")
    return list(qs.filter(team=team) if team is not None else qs)


@pytest.fixture
def watched(people):
    """Team A watches shop.example (a domain and a server under it); team B a server under it and other.test."""
    WatchedDomain.objects.create(team=people.team_a, domain="shop.example")
    Server.objects.create(team=people.team_a, host="www.shop.example")
    Server.objects.create(team=people.team_a, host="10.1.2.3")  # an address has no registration
    Server.objects.create(team=people.team_b, host="api.shop.example", port=8443)
    WatchedDomain.objects.create(team=people.team_b, domain="mail.other.test")
    return people


def sync_and_check(when: datetime):
    with at(when):
        registrations_sync()
    with at(when + timedelta(minutes=11)):  # new domains are due within 10 minutes
        return registrations_check_due()


def test_sync_follows_watched_domains_and_servers_registered_domains(watched) -> None:
    result = registrations_sync()
    assert result.registrations_created == 2
    pairs = set(RegistrationWatch.objects.values_list("team__name", "registration__domain"))
    assert pairs == {("Team A", "shop.example"), ("Team B", "shop.example"), ("Team B", "other.test")}
    Server.objects.filter(host="api.shop.example").update(removed_at=timezone.now())
    result = registrations_sync()
    assert (result.registrations_created, result.watches_added, result.watches_removed) == (0, 0, 1)
    assert not RegistrationWatch.objects.filter(team=watched.team_b, registration__domain="shop.example").exists()


def test_a_check_stores_the_registration_and_schedules_the_next_in_48_hours(watched, rdap_lab) -> None:
    rdap_lab.register("shop.example", expires_at=T0 + timedelta(days=400), registrar="Lab Names GmbH")
    run = sync_and_check(T0)
    assert (run.claimed, run.ok, run.errors) == (2, 2, 0)
    shop = reg("shop.example")
    assert shop.status == RegistrationStatus.OK
    assert shop.expires_at == T0 + timedelta(days=400)
    assert shop.registrar == "Lab Names GmbH" and "active" in shop.statuses
    assert shop.rdap_server == rdap_lab.url and shop.last_error == ""
    checked = T0 + timedelta(minutes=11)
    assert shop.last_checked_at == checked and shop.last_changed_at == checked
    assert checked + timedelta(hours=48 * 0.85) <= shop.next_check_at <= checked + timedelta(hours=48 * 1.15)
    assert shop.claimed_until is None
    # Nothing is due again until then: a second run asks nothing.
    with at(checked + timedelta(hours=40)):
        assert registrations_check_due().claimed == 0
    assert expiring_events() == []


def _scheduler(until: datetime, start: datetime, step: timedelta = timedelta(hours=6)) -> None:
    when = start
    while when <= until:
        with at(when):
            registrations_check_due()
        when += step


def test_each_threshold_fires_exactly_once_per_team_on_time(watched, rdap_lab) -> None:
    expiry = T0 + timedelta(days=100)
    rdap_lab.register("shop.example", expires_at=expiry)
    sync_and_check(T0)
    _scheduler(until=expiry + timedelta(days=3), start=T0 + timedelta(hours=6))
    for team in (watched.team_a, watched.team_b):
        events = [e for e in expiring_events(team) if e.payload["domain"] == "shop.example"]
        assert [e.payload["threshold_days"] for e in events] == [84, 28, 14]
        for event in events:
            crossing = expiry - timedelta(days=event.payload["threshold_days"])
            # Checks are scheduled at the crossing: the event is at most one scheduler step late.
            assert crossing <= event.occurred_at <= crossing + timedelta(hours=6)
        assert [e.severity for e in events] == ["info", "warning", "error"]
        assert events[1].payload["days_left"] in (27, 28)
        assert events[1].subject == f"shop.example expires {expiry.date()} ({events[1].payload['days_left']} days left)"
    # Re-checked every ~48 hours (and at the three crossings), not more.
    asked = rdap_lab.requests.count("/domain/shop.example")
    assert 100 * 24 / (48 * 1.15) <= asked <= 100 * 24 / (48 * 0.85) + 5


def test_a_registration_first_seen_inside_14_days_warns_once_not_three_times(watched, rdap_lab) -> None:
    rdap_lab.register("shop.example", expires_at=T0 + timedelta(days=10))
    sync_and_check(T0)
    with at(T0 + timedelta(days=1)):
        registration_check_now(name="shop.example")
    events = expiring_events(watched.team_a)
    assert [e.payload["threshold_days"] for e in events] == [14]


def test_a_renewal_re_arms_the_thresholds(watched, rdap_lab) -> None:
    first = T0 + timedelta(days=30)
    rdap_lab.register("shop.example", expires_at=first)
    sync_and_check(T0)
    _scheduler(until=T0 + timedelta(days=5), start=T0 + timedelta(hours=6))
    assert [e.payload["threshold_days"] for e in expiring_events(watched.team_a)] == [84, 28]
    renewed = first + timedelta(days=365)
    rdap_lab.register("shop.example", expires_at=renewed)
    with at(T0 + timedelta(days=6)):
        registration_check_now(name="shop.example")
    assert reg("shop.example").expires_at == renewed
    assert len(expiring_events(watched.team_a)) == 2  # nothing new: the renewed expiry is far away
    _scheduler(until=renewed - timedelta(days=83), start=renewed - timedelta(days=86))
    events = expiring_events(watched.team_a)
    assert [(e.payload["threshold_days"], e.payload["expires_at"][:10]) for e in events] == [
        (84, str(first.date())),
        (28, str(first.date())),
        (84, str(renewed.date())),
    ]


def test_429_backs_the_rdap_server_off_and_the_rest_waits(people, rdap_lab, settings) -> None:
    for name in ("a.test", "b.test", "c.test"):
        WatchedDomain.objects.create(team=people.team_a, domain=name)
    rdap_lab.faults.status_429, rdap_lab.faults.retry_after = 1, 600
    run = sync_and_check(T0)
    assert (run.claimed, run.errors, run.deferred, run.ok) == (3, 1, 2, 0)
    server = RdapServer.objects.get(base_url=rdap_lab.url)
    assert server.failures == 1 and server.backoff_until >= T0 + timedelta(minutes=11, seconds=600)
    assert len(rdap_lab.requests) == 1  # the server was asked once, then left alone
    limited = DomainRegistration.objects.get(last_error_code="rate_limited")
    assert limited.next_check_at >= T0 + timedelta(minutes=11, seconds=600)
    with at(T0 + timedelta(minutes=13)):
        assert registrations_check_due().claimed == 0  # backing off: postponed, not asked
    with at(T0 + timedelta(minutes=40)):
        run = registrations_check_due()
    assert run.ok == 2 and RdapServer.objects.get().failures == 0
    with at(T0 + timedelta(hours=2)):  # the throttled domain itself is retried after an hour or so
        assert registrations_check_due().ok == 1
    assert DomainRegistration.objects.filter(status=RegistrationStatus.OK).count() == 3


def test_runs_are_bounded_per_rdap_server(people, rdap_lab, settings) -> None:
    settings.KEYCHEST_RDAP_PER_SERVER = 2
    for name in ("a.test", "b.test", "c.test", "d.test", "e.test"):
        WatchedDomain.objects.create(team=people.team_a, domain=name)
    assert sync_and_check(T0).claimed == 2
    with at(T0 + timedelta(minutes=12)):
        assert registrations_check_due().claimed == 2
    with at(T0 + timedelta(minutes=13)):
        assert registrations_check_due().claimed == 1
    assert len(rdap_lab.requests) == 5


def test_a_5xx_keeps_what_was_known_and_retries_sooner(watched, rdap_lab) -> None:
    rdap_lab.register("shop.example", expires_at=T0 + timedelta(days=400))
    sync_and_check(T0)
    rdap_lab.faults.status_500 = 1
    with at(T0 + timedelta(days=1)):
        registration_check_now(name="shop.example")
    shop = reg("shop.example")
    assert shop.status == RegistrationStatus.OK and shop.expires_at == T0 + timedelta(days=400)
    assert shop.last_error_code == "server_error" and shop.consecutive_errors == 1
    assert shop.next_check_at <= T0 + timedelta(days=1, hours=1.2)


@pytest.mark.parametrize("fault", ["malformed", "oversized", "not_a_domain"])
def test_bad_answers_are_recorded_errors(watched, rdap_lab, settings, fault) -> None:
    settings.KEYCHEST_RDAP_MAX_BYTES = 64 * 1024
    setattr(rdap_lab.faults, fault, 1)
    with at(T0):
        run = registration_check_now(name="www.shop.example")
    assert run.errors == 1
    shop = reg("shop.example")
    assert shop.status == RegistrationStatus.ERROR and shop.expires_at is None
    assert shop.last_error_code in ("malformed", "too_large") and shop.last_error


def test_not_registered_is_recorded_and_clears_old_data(watched, rdap_lab) -> None:
    sync_and_check(T0)
    assert reg("other.test").expires_at is not None
    rdap_lab.faults.not_found.add("other.test")
    with at(T0 + timedelta(days=3)):
        registration_check_now(name="other.test")
    other = reg("other.test")
    assert other.status == RegistrationStatus.NOT_FOUND and other.expires_at is None and other.registrar == ""


def test_private_rdap_servers_are_refused_unless_allowed(watched, rdap_lab, settings) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    with at(T0):
        registration_check_now(name="shop.example")
    shop = reg("shop.example")
    assert shop.last_error_code == "refused" and "loopback" in shop.last_error
    assert rdap_lab.requests == []


def test_a_tld_without_rdap_server_is_recorded_and_looked_at_weekly(people, rdap_lab) -> None:
    with at(T0):
        registration_check_now(name="www.example.com")
    row = reg("example.com")
    assert row.status == RegistrationStatus.NO_SERVER
    assert row.next_check_at >= T0 + timedelta(days=5)


def test_the_event_is_written_with_the_change_or_not_at_all(watched, rdap_lab, monkeypatch) -> None:
    rdap_lab.register("shop.example", expires_at=T0 + timedelta(days=20))
    with at(T0):
        registrations_sync()
    registration = reg("shop.example")

    def broken(events):
        list(events)
        raise RuntimeError("crash while recording events")

    monkeypatch.setattr("monitors.registrations.events_record_bulk", broken)
    from monitors import rdap

    record = rdap.query_domain(rdap_lab.url, "shop.example", allow_private=True, timeout=5)
    with at(T0), pytest.raises(RuntimeError):
        registration_store(
            registration_id=registration.pk,
            base_url=rdap_lab.url,
            record=record,
            config=RdapConfig.from_settings(),
        )
    registration.refresh_from_db()
    assert registration.status == RegistrationStatus.PENDING and registration.expires_at is None
    assert expiring_events() == []


def test_command_checks_a_domain_now_and_prints_json(watched, rdap_lab) -> None:
    rdap_lab.register("shop.example", expires_at=T0 + timedelta(days=50), registrar="Lab Names GmbH")
    out = io.StringIO()
    with at(T0):
        call_command("rdap_check", "www.shop.example", "--json", stdout=out)
    [row] = json.loads(out.getvalue())["domains"]
    assert row["domain"] == "shop.example" and row["days_left"] == 50 and row["registrar"] == "Lab Names GmbH"
    out = io.StringIO()
    with at(T0 + timedelta(hours=1)):
        call_command("rdap_check", "--due", stdout=out)  # syncs: other.test is new, due within minutes
    assert "synced: 1 new registered domains" in out.getvalue() and "nothing checked" in out.getvalue()
    out = io.StringIO()
    with at(T0 + timedelta(hours=1, minutes=11)):
        call_command("rdap_check", "--due", stdout=out)
    assert "other.test: expires" in out.getvalue() and "shop.example" not in out.getvalue()


def test_the_beat_tasks_sync_and_check(watched, rdap_lab) -> None:
    with at(T0):
        assert tasks.registrations_sync()["registrations_created"] == 2
    with at(T0 + timedelta(minutes=11)):
        assert tasks.registrations_check_due() == {"claimed": 2, "ok": 2, "not_found": 0, "errors": 0}


def test_an_unreachable_bootstrap_url_falls_back_to_the_last_good_copy(watched, rdap_lab, settings) -> None:
    from monitors.registrations import bootstrap_get

    settings.KEYCHEST_RDAP_BOOTSTRAP = rdap_lab.url + "dns.json"
    assert bootstrap_get(RdapConfig.from_settings()).server_for("shop.example") == rdap_lab.url
    from monitors import registrations

    source = settings.KEYCHEST_RDAP_BOOTSTRAP
    loaded_at, good = registrations._bootstrap_cache[source]
    registrations._bootstrap_cache[source] = (loaded_at - 2 * 86400, good)  # a day old: fetched again
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False  # now the URL is refused
    assert bootstrap_get(RdapConfig.from_settings()) is good
    registrations.bootstrap_forget()
    # Nothing good seen yet: the bundled snapshot.
    assert bootstrap_get(RdapConfig.from_settings()).server_for("example.com").startswith("https://rdap.verisign")
