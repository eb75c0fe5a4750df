"""Enrolling, bulk-enrolling, pausing and removing watched servers."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from kcproto import renewal
from kcproto.targets import InvalidTarget, normalise_host, parse_target
from monitors.models import Finding, ScanResult, Server
from monitors.services import (
    AlreadyWatched,
    server_enrol,
    server_pause,
    server_remove,
    server_resume,
    server_update,
    servers_enrol_bulk,
)


@pytest.mark.parametrize(
    ("text", "host", "port"),
    [
        ("Example.COM.", "example.com", None),
        ("example.com:8443", "example.com", 8443),
        ("https://www.example.com/path", "www.example.com", 443),
        ("[2001:db8::1]:993", "2001:db8::1", 993),
        ("2001:db8::1", "2001:db8::1", None),
        ("bücher.example", "xn--bcher-kva.example", None),
        ("BÜCHER.example:25", "xn--bcher-kva.example", 25),
        ("0x7f.1:8443", "127.0.0.1", 8443),
        ("2130706433", "127.0.0.1", None),
    ],
)
def test_it_normalises_targets(text: str, host: str, port: int | None) -> None:
    assert parse_target(text) == (host, port)


@pytest.mark.parametrize(
    "text",
    ["", "*.example.com", "a" * 64 + ".com", ("a" * 60 + ".") * 5 + "com", "exa mple.com", "1.2.3.4.5", "x:99999"],
)
def test_it_refuses_bad_targets(text: str) -> None:
    with pytest.raises(InvalidTarget):
        parse_target(text)


def test_normalise_host_keeps_ip_literals_canonical() -> None:
    assert normalise_host("[2001:DB8:0::1]") == "2001:db8::1"


@pytest.mark.parametrize(
    ("port", "protocol"),
    [
        *[(443, "tls"), (25, "smtp"), (587, "smtp"), (143, "imap"), (110, "pop3"), (21, "ftp"), (389, "ldap")],
        *[(5222, "xmpp"), (5432, "postgres"), (465, "tls"), (993, "tls"), (995, "tls"), (636, "tls"), (8443, "tls")],
    ],
)
def test_enrol_picks_the_protocol_from_the_port(people, port: int, protocol: str) -> None:
    server = server_enrol(team=people.team_a, host=f"mail.example.com:{port}")
    assert (server.port, server.protocol) == (port, protocol)
    assert server.next_scan_at is not None


def test_enrol_defaults_to_443_and_the_protocol_port(people) -> None:
    assert server_enrol(team=people.team_a, host="example.com").port == 443
    assert server_enrol(team=people.team_a, host="example.com", protocol="imap").port == 143


def test_enrolling_twice_says_already_watched_but_other_teams_are_independent(people) -> None:
    first = server_enrol(team=people.team_a, host="example.com")
    with pytest.raises(AlreadyWatched) as caught:
        server_enrol(team=people.team_a, host="EXAMPLE.com.:443")
    assert caught.value.server == first
    assert server_enrol(team=people.team_b, host="example.com").team == people.team_b


@pytest.mark.django_db(transaction=True)  # autocommit, as in a request: no savepoints around the statement
def test_enrolling_again_is_one_statement_that_returns_the_watched_server(people) -> None:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    first = server_enrol(team=people.team_a, host="example.com", tags=["prod"], pinned_ip="192.0.2.7")
    with CaptureQueriesContext(connection) as queries, pytest.raises(AlreadyWatched) as caught:
        server_enrol(team=people.team_a, host="example.com")
    existing = caught.value.server
    assert existing.pk == first.pk and existing.uuid == first.uuid
    # Every field is loaded, with the ORM's conversions (JSON, timestamps).
    assert existing.tags == ["prod"] and existing.pinned_ip == "192.0.2.7"
    assert existing.created_at == Server.objects.get(pk=first.pk).created_at
    assert existing.get_deferred_fields() == set()
    if connection.vendor == "postgresql":
        assert len(queries) == 1


def test_a_removed_server_does_not_hold_its_target(people) -> None:
    first = server_enrol(team=people.team_a, host="example.com")
    server_remove(server=first)
    again = server_enrol(team=people.team_a, host="example.com")
    assert again.pk != first.pk and again.removed_at is None


def test_a_conflict_the_statement_could_not_see_is_looked_up(people, monkeypatch) -> None:
    # A concurrent enrolment committed after the statement's snapshot was taken: the INSERT
    # meets its row, the statement's own SELECT cannot see it.
    from monitors import services

    first = server_enrol(team=people.team_a, host="example.com")
    monkeypatch.setattr(services, "insert_or_find", lambda *args, **kwargs: (False, None))
    with pytest.raises(AlreadyWatched) as caught:
        server_enrol(team=people.team_a, host="example.com")
    assert caught.value.server == first


def test_bulk_enrol_reports_errors_per_line(people) -> None:
    server_enrol(team=people.team_a, host="old.example.com")
    result = servers_enrol_bulk(
        team=people.team_a,
        text="a.example.com\n\n# comment\nb.example.com:8443\nbad host\nold.example.com\n*.x.com\nc.example.com:0\n",
    )
    assert [s.label for s in result.created] == ["a.example.com:443", "b.example.com:8443"]
    assert [s.host for s in result.existing] == ["old.example.com"]
    assert [(e.line_number, e.line) for e in result.errors] == [(5, "bad host"), (7, "*.x.com"), (8, "c.example.com:0")]


def test_pause_resume_and_remove_keep_history(people) -> None:
    server = server_enrol(team=people.team_a, host="example.com")
    now = datetime.now(UTC)
    ScanResult.objects.create(
        team=people.team_a, server=server, address="93.184.216.34", state_digest="x", first_seen=now, last_seen=now
    )
    Finding.objects.create(
        team=people.team_a,
        server=server,
        code="expired",
        severity="critical",
        message="m",
        first_seen=now,
        last_seen=now,
    )
    server_pause(server=server)
    assert not Server.objects.get(pk=server.pk).is_active
    server_resume(server=server)
    assert Server.objects.get(pk=server.pk).is_active
    server_remove(server=server)
    server.refresh_from_db()
    assert server.removed_at is not None
    assert server.results.count() == 1
    assert server.findings.get().resolved_at is not None
    # The same target can be watched again, as a new server.
    assert server_enrol(team=people.team_a, host="example.com").pk != server.pk


def test_update_validates_settings(people) -> None:
    server = server_enrol(team=people.team_a, host="example.com")
    server_update(server=server, scan_interval=3600, tags=["prod", "prod", "web"], due_fraction=0.5)
    server.refresh_from_db()
    assert (server.scan_interval, server.tags, server.due_fraction) == (3600, ["prod", "web"], 0.5)
    with pytest.raises(InvalidTarget):
        server_update(server=server, scan_interval=10)
    with pytest.raises(InvalidTarget):
        server_update(server=server, overdue_fraction=2)


def _result(not_before: datetime, not_after: datetime) -> ScanResult:
    return ScanResult(not_before=not_before, not_after=not_after)


def test_renewal_is_a_fraction_of_the_certificates_own_lifetime() -> None:
    now = datetime(2026, 6, 1, tzinfo=UTC)
    # A 6-day certificate with 1 day left is overdue (1/6 of 6 days = 1 day, and less is left).
    six_day = _result(now - timedelta(days=5, hours=1), now + timedelta(hours=23))
    assert six_day.renewal_state(now) == "overdue"
    # A 90-day certificate with 29 days left is due; a 398-day one with 30 days left is planned
    # (due), not overdue: overdue is a sixth of the lifetime but at most two weeks.
    assert _result(now - timedelta(days=60), now + timedelta(days=29)).renewal_state(now) == "due"
    assert _result(now - timedelta(days=368), now + timedelta(days=30)).renewal_state(now) == "due"
    assert _result(now - timedelta(days=385), now + timedelta(days=13)).renewal_state(now) == "overdue"
    assert _result(now - timedelta(days=80), now + timedelta(days=10)).renewal_state(now) == "overdue"
    assert _result(now - timedelta(days=30), now + timedelta(days=60)).renewal_state(now) == "ok"
    assert _result(now - timedelta(days=90), now - timedelta(seconds=1)).renewal_state(now) == "expired"
    assert _result(now + timedelta(days=1), now + timedelta(days=91)).renewal_state(now) == "not_yet_valid"
    assert six_day.days_left(now) == pytest.approx(23 / 24)
    assert six_day.renewal_due(now)
    # Per-team/per-server overrides.
    assert _result(now - timedelta(days=30), now + timedelta(days=60)).renewal_state(now, due=0.7) == "due"
    assert renewal.renewal_at(now, now + timedelta(days=90)) == now + timedelta(days=60)


def test_server_thresholds_fall_back_to_the_team_policy(people) -> None:
    from monitors.models import TeamScanPolicy

    server = server_enrol(team=people.team_a, host="example.com")
    policy = TeamScanPolicy.objects.create(team=people.team_a, due_fraction=0.5, overdue_fraction=0.25)
    assert server.thresholds(policy) == (0.5, 0.25)
    server.due_fraction = 0.4
    assert server.thresholds(policy) == (0.4, 0.25)
    assert server.thresholds(None) == (0.4, None)


def test_spot_checks_are_forgotten_after_thirty_days(db) -> None:
    from django.utils import timezone

    from monitors.models import SpotCheck
    from monitors.services import spotchecks_purge

    old = SpotCheck.objects.create(host="old.example", port=443, result={})
    SpotCheck.objects.filter(pk=old.pk).update(created_at=timezone.now() - timedelta(days=31))
    fresh = SpotCheck.objects.create(host="new.example", port=443, result={})
    assert spotchecks_purge() == 1
    assert list(SpotCheck.objects.values_list("pk", flat=True)) == [fresh.pk]


@pytest.mark.parametrize(
    "name",
    ["www.example.com", "a-b.example.co.uk", "x1.y2.example", "xn--bcher-kva.example", "bücher.example"],
)
def test_normalise_host_skips_idna_only_where_idna_would_change_nothing(name: str) -> None:
    import idna

    normalise_host.cache_clear()
    assert normalise_host(name) == idna.encode(name, uts46=True, transitional=False).decode("ascii")


@pytest.mark.parametrize("name", ["www\n.example.com", "-a.example.com", "a-.example.com", "ab--cd.example"])
def test_normalise_host_refuses_what_idna_refuses(name: str) -> None:
    normalise_host.cache_clear()
    with pytest.raises(InvalidTarget):
        normalise_host(name)
