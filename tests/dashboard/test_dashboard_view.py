from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.urls import reverse

from dashboard.selectors import dashboard_for
from tests.dashboard.factories import CLOUDFLARE, DIGICERT, finding, server_with_certificate

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
D = timedelta(days=1)


@pytest.fixture
def frozen():
    with time_machine.travel(NOW, tick=False):
        yield NOW


def _dash(team):
    import zoneinfo

    return dashboard_for(team=team, now=NOW, tz=zoneinfo.ZoneInfo("UTC"))


def test_tiles_count_distinct_certificates_by_expiry_window(people, frozen) -> None:
    team = people.team_a
    server_with_certificate(team, "now.example.com", expires_in=3 * D, now=NOW)
    # One certificate on two addresses and a second server counts once.
    shared = "a" * 64
    server_with_certificate(
        team, "soon1.example.com", expires_in=20 * D, leaf=shared, addresses=("192.0.2.1", "192.0.2.2"), now=NOW
    )
    server_with_certificate(team, "soon2.example.com", expires_in=20 * D, leaf=shared, now=NOW)
    server_with_certificate(team, "later.example.com", expires_in=60 * D, now=NOW)
    server_with_certificate(team, "gone.example.com", expires_in=-2 * D, now=NOW)
    tiles = _dash(team).tiles
    assert tiles.expiring_now == 1
    assert tiles.expiring_soon == 2
    assert tiles.expired == 1
    assert tiles.on_servers == 4
    assert tiles.servers == 5


def test_down_and_overdue_tiles_come_from_open_findings(people, frozen) -> None:
    team = people.team_a
    a = server_with_certificate(team, "a.example.com", expires_in=5 * D, now=NOW)
    b = server_with_certificate(team, "b.example.com", expires_in=50 * D, now=NOW)
    finding(a, "renewal_overdue", severity="error")
    finding(b, "connect_failed", address="192.0.2.1")
    finding(b, "timeout", address="192.0.2.2")
    resolved = finding(a, "dns_failure")
    resolved.resolved_at = NOW
    resolved.save()
    tiles = _dash(team).tiles
    assert tiles.renewal_overdue == 1
    assert tiles.servers_down == 1


def test_planner_puts_each_certificate_in_its_bucket_with_the_servers_behind_it(people, frozen) -> None:
    team = people.team_a
    for days, host in [
        (0.5, "h0"),
        (7.5, "h7"),
        (8.2, "h8"),
        (14.9, "h14"),
        (15, "h15"),
        (21.9, "h21"),
        (22, "h22"),
        (28.9, "h28"),
        (29.1, "h29"),
        (-1, "hx"),
    ]:
        server_with_certificate(team, f"{host}.example.com", expires_in=timedelta(days=days), now=NOW)
    buckets = {b.key: b for b in _dash(team).planner}
    hosts = {key: sorted(s.host.split(".")[0] for e in b.entries for s, _ in e.servers) for key, b in buckets.items()}
    assert hosts == {
        "d0_7": ["h0", "h7"],
        "d8_14": ["h14", "h8"],
        "d15_21": ["h15", "h21"],
        "d22_28": ["h22", "h28"],
        "expired": ["hx"],
    }
    assert {key: b.count for key, b in buckets.items()} == {
        "d0_7": 2,
        "d8_14": 2,
        "d15_21": 2,
        "d22_28": 2,
        "expired": 1,
    }


def test_calendar_stacks_twelve_months_by_issuer_kind(people, frozen) -> None:
    team = people.team_a
    server_with_certificate(team, "le.example.com", expires_in=5 * D, now=NOW)  # March
    server_with_certificate(team, "cf.example.com", expires_in=25 * D, issuer=CLOUDFLARE, now=NOW)  # April
    server_with_certificate(team, "dc.example.com", expires_in=300 * D, issuer=DIGICERT, now=NOW)  # January
    server_with_certificate(team, "far.example.com", expires_in=400 * D, issuer=DIGICERT, now=NOW)  # beyond
    months = _dash(team).calendar
    assert len(months) == 12
    assert months[0].start.isoformat() == "2026-03-01"
    assert months[0].counts == {"letsencrypt": 1, "managed": 0, "other": 0}
    assert months[1].counts == {"letsencrypt": 0, "managed": 1, "other": 0}
    assert months[10].start.isoformat() == "2027-01-01"
    assert months[10].counts["other"] == 1
    assert sum(m.total for m in months) == 3


def test_incidents_group_open_findings_with_first_detection_and_last_failure(people, frozen) -> None:
    team = people.team_a
    s = server_with_certificate(team, "bad.example.com", expires_in=40 * D, now=NOW)
    finding(s, "hostname_mismatch", message="certificate does not name bad.example.com", first_seen=NOW - 5 * D)
    finding(s, "self_signed")
    finding(s, "ips_disagree", severity="warning")
    finding(s, "newer_certificate_not_deployed", severity="warning")
    finding(s, "weak_key", severity="warning")  # not an incident table
    groups = {g.key: g for g in _dash(team).incidents}
    assert groups["hostname"].count == 1
    assert groups["hostname"].findings[0].first_seen == NOW - 5 * D
    assert groups["configuration"].count == 1
    assert groups["ips_disagree"].count == 1
    assert groups["not_deployed"].count == 1
    assert groups["dns"].count == 0


def test_the_page_shows_tiles_planner_and_incidents(alice_client, people, frozen) -> None:
    team = people.team_a
    s = server_with_certificate(team, "shop.example.com", expires_in=3 * D, now=NOW)
    finding(s, "hostname_mismatch", message="no match")
    html = alice_client.get(reverse("dashboard")).content.decode()
    assert 'data-testid="tile-expiring-now"' in html
    assert "shop.example.com" in html
    assert "hostname_mismatch" in html
    assert 'data-testid="bucket-count-d0_7">1<' in html


def test_hostile_certificate_text_is_escaped(alice_client, people, frozen) -> None:
    team = people.team_a
    evil = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
    s = server_with_certificate(
        team, "evil.example.com", expires_in=2 * D, issuer=f"CN={evil},O=Evil", names=[evil], now=NOW
    )
    finding(s, "hostname_mismatch", message=evil)
    html = alice_client.get(reverse("dashboard")).content.decode()
    assert "<script>alert(1)" not in html
    assert "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_times_are_shown_in_the_users_time_zone(alice_client, people, frozen) -> None:
    people.alice.timezone = "Asia/Tokyo"
    people.alice.save()
    s = server_with_certificate(people.team_a, "tz.example.com", expires_in=5 * D, now=NOW)
    finding(s, "hostname_mismatch")
    html = alice_client.get(reverse("dashboard")).content.decode()
    # 2026-03-15 12:00 UTC is 21:00 in Tokyo.
    assert "2026-03-15 21:00 JST" in html
    assert "in 5 days" in html


def test_the_query_count_does_not_grow_with_the_team(
    alice_client, people, frozen, django_assert_max_num_queries
) -> None:
    team = people.team_a
    for i in range(3):
        s = server_with_certificate(team, f"s{i}.example.com", expires_in=(i + 1) * 3 * D, now=NOW)
        finding(s, "hostname_mismatch")
    with django_assert_max_num_queries(20) as small:
        assert alice_client.get(reverse("dashboard")).status_code == 200
    for i in range(3, 40):
        s = server_with_certificate(team, f"s{i}.example.com", expires_in=(i % 30 - 2) * D, now=NOW)
        finding(s, "connect_failed")
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert alice_client.get(reverse("dashboard")).status_code == 200


def test_charlie_sees_only_his_own_teams_numbers(charlie_client, people, frozen) -> None:
    s = server_with_certificate(people.team_a, "alice-secret.example.com", expires_in=3 * D, now=NOW)
    finding(s, "hostname_mismatch")
    html = charlie_client.get(reverse("dashboard")).content.decode()
    assert "alice-secret" not in html
    assert 'data-testid="bucket-count-d0_7">0<' in html


def test_anonymous_visitors_are_sent_to_sign_in(client) -> None:
    response = client.get(reverse("dashboard"))
    assert response.status_code == 302
    assert reverse("account_login") in response["Location"]
