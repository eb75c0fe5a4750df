from __future__ import annotations

from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from monitors.models import Server
from tests.dashboard.factories import finding, server_with_certificate

pytestmark = pytest.mark.django_db
D = timedelta(days=1)


def test_the_list_shows_status_expiry_issuer_and_last_scan(alice_client, people) -> None:
    team = people.team_a
    ok = server_with_certificate(team, "ok.example.com", expires_in=50 * D)
    bad = server_with_certificate(team, "bad.example.com", expires_in=5 * D)
    finding(bad, "hostname_mismatch", severity="error")
    down = server_with_certificate(team, "down.example.com", expires_in=40 * D)
    finding(down, "connect_failed", severity="error")
    Server.objects.create(team=team, host="new.example.com")
    html = alice_client.get(reverse("server_list")).content.decode()
    assert ok.host in html and "R11" in html
    assert 'badge-ok">ok<' in html
    assert 'badge-error">error<' in html
    assert 'badge-critical">down<' in html
    assert 'badge ">pending<' in html


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("ok", {"ok"}),
        ("problem", {"bad"}),
        ("down", {"down"}),
        ("pending", {"new"}),
        ("paused", {"sleepy"}),
        ("warning", {"warn"}),
    ],
)
def test_it_filters_by_status(alice_client, people, status, expected) -> None:
    team = people.team_a
    server_with_certificate(team, "ok.example.com", expires_in=50 * D)
    finding(server_with_certificate(team, "bad.example.com", expires_in=5 * D), "untrusted", severity="critical")
    finding(server_with_certificate(team, "warn.example.com", expires_in=5 * D), "legacy_tls", severity="warning")
    finding(server_with_certificate(team, "down.example.com", expires_in=5 * D), "timeout")
    Server.objects.create(team=team, host="new.example.com")
    Server.objects.create(team=team, host="sleepy.example.com", paused=True)
    response = alice_client.get(reverse("server_list"), {"status": status})
    hosts = {s.host.split(".")[0] for s in response.context["servers"]}
    assert hosts == expected


def test_it_searches_filters_by_tag_and_sorts_by_expiry(alice_client, people) -> None:
    team = people.team_a
    server_with_certificate(team, "b.example.com", expires_in=50 * D)
    server_with_certificate(team, "a.example.com", expires_in=90 * D)
    server_with_certificate(team, "c.other.org", expires_in=10 * D)
    Server.objects.filter(host="a.example.com").update(tags=["prod", "web"])
    by_expiry = alice_client.get(reverse("server_list"), {"sort": "expiry"}).context["servers"]
    assert [s.host for s in by_expiry] == ["c.other.org", "b.example.com", "a.example.com"]
    found = alice_client.get(reverse("server_list"), {"q": "EXAMPLE"}).context["servers"]
    assert {s.host for s in found} == {"a.example.com", "b.example.com"}
    tagged = alice_client.get(reverse("server_list"), {"tag": "prod"}).context["servers"]
    assert [s.host for s in tagged] == ["a.example.com"]


def test_adding_one_server_watches_it_and_a_bad_name_says_why(alice_client, people) -> None:
    response = alice_client.post(reverse("server_list_add"), {"host": "shop.example.com:8443", "tags": "prod, eu"})
    assert response.status_code == 302
    server = Server.objects.get(team=people.team_a, host="shop.example.com")
    assert server.port == 8443 and server.tags == ["prod", "eu"]
    response = alice_client.post(reverse("server_list_add"), {"host": "not a host!"}, follow=True)
    assert "Not added" in response.content.decode()


def test_bulk_paste_adds_each_line_reports_errors_and_shows_first_scan_progress(alice_client, people) -> None:
    text = "a.example.com\nb.example.com:465\n# a comment\n\nbad host name\na.example.com\n"
    response = alice_client.post(reverse("server_list_bulk"), {"text": text}, follow=True)
    html = response.content.decode()
    assert "2 added, 1 already watched, 1 not understood." in html
    assert "Line 5" in html
    assert Server.objects.for_team(people.team_a).count() == 2
    assert 'data-testid="first-scans"' in html
    assert "0 of 2 new servers scanned" in html
    Server.objects.filter(host="a.example.com").update(last_scan_at=timezone.now())
    fragment = alice_client.get(reverse("server_list_progress"), {"was_pending": "1"}, headers={"HX-Request": "true"})
    assert "1 of 2" in fragment.content.decode()
    assert "HX-Refresh" not in fragment
    Server.objects.update(last_scan_at=timezone.now())
    fragment = alice_client.get(reverse("server_list_progress"), {"was_pending": "1"}, headers={"HX-Request": "true"})
    assert fragment["HX-Refresh"] == "true"


def test_pause_resume_and_remove(alice_client, people) -> None:
    server = server_with_certificate(people.team_a, "x.example.com", expires_in=30 * D)
    alice_client.post(reverse("server_list_pause", args=[server.uuid]))
    server.refresh_from_db()
    assert server.paused
    alice_client.post(reverse("server_list_pause", args=[server.uuid]))
    server.refresh_from_db()
    assert not server.paused
    alice_client.post(reverse("server_list_remove", args=[server.uuid]))
    server.refresh_from_db()
    assert server.removed_at is not None
    assert list(alice_client.get(reverse("server_list")).context["servers"]) == []


def test_a_viewer_cannot_add_or_remove(client_for, people) -> None:
    from keychest.accounts.models import Membership, Role

    Membership.objects.filter(user=people.bob, team=people.team_a).update(role=Role.VIEWER)
    bob = client_for(people.bob, people.team_a)
    server = server_with_certificate(people.team_a, "x.example.com", expires_in=30 * D)
    assert bob.post(reverse("server_list_add"), {"host": "y.example.com"}).status_code == 403
    assert bob.post(reverse("server_list_remove", args=[server.uuid])).status_code == 403
    assert bob.get(reverse("server_list")).status_code == 200


def test_charlie_gets_404_for_alices_servers_and_never_sees_them(charlie_client, people) -> None:
    server = server_with_certificate(people.team_a, "alice-only.example.com", expires_in=30 * D)
    assert charlie_client.post(reverse("server_list_pause", args=[server.uuid])).status_code == 404
    assert charlie_client.post(reverse("server_list_remove", args=[server.uuid])).status_code == 404
    assert "alice-only" not in charlie_client.get(reverse("server_list")).content.decode()
    server.refresh_from_db()
    assert not server.paused and server.removed_at is None


def test_hostile_names_and_issuers_are_escaped(alice_client, people) -> None:
    evil = "<script>alert(1)</script>"
    server_with_certificate(people.team_a, "evil.example.com", expires_in=3 * D, issuer=f"CN={evil}")
    Server.objects.filter(host="evil.example.com").update(tags=[evil])
    html = alice_client.get(reverse("server_list")).content.decode()
    assert "<script>alert(1)" not in html
    assert "&lt;script&gt;" in html


def test_the_query_count_is_the_same_for_5_and_60_servers(alice_client, people, django_assert_max_num_queries) -> None:
    team = people.team_a
    for i in range(5):
        finding(server_with_certificate(team, f"s{i}.example.com", expires_in=(i + 1) * D), "untrusted")
    with django_assert_max_num_queries(30) as small:
        assert alice_client.get(reverse("server_list")).status_code == 200
    for i in range(5, 60):
        finding(server_with_certificate(team, f"s{i}.example.com", expires_in=(i + 1) * D), "untrusted")
    with django_assert_max_num_queries(len(small.captured_queries)):
        response = alice_client.get(reverse("server_list"))
    assert len(response.context["servers"]) == 50
    assert "Page 1 of 2" in response.content.decode()


def test_a_hostile_host_is_escaped_in_the_row_attribute_link_and_confirmation(alice_client, people) -> None:
    evil = '"><script>alert(1)</script>'
    Server.objects.create(team=people.team_a, host=f"x{evil}.example.com", last_scan_at=timezone.now())
    html = alice_client.get(reverse("server_list")).content.decode()
    assert "<script>alert(1)" not in html
    escaped = "x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;.example.com"
    assert f'<tr data-host="{escaped}">' in html
    assert f">{escaped}:443</a>" in html
    assert f'data-confirm="Stop watching {escaped}:443? Its history is kept."' in html


def test_a_viewer_sees_every_row_but_no_pause_or_remove_form(client_for, people) -> None:
    from keychest.accounts.models import Membership, Role

    Membership.objects.filter(user=people.bob, team=people.team_a).update(role=Role.VIEWER)
    for host in ("a.example.com", "b.example.com"):
        server_with_certificate(people.team_a, host, expires_in=30 * D)
    html = client_for(people.bob, people.team_a).get(reverse("server_list")).content.decode()
    assert html.count("<tr data-host=") == 2
    assert "row-actions" not in html and "/pause/" not in html and "/remove/" not in html


def test_the_row_forms_return_to_the_same_filtered_page(alice_client, people) -> None:
    server = server_with_certificate(people.team_a, "x.example.com", expires_in=30 * D)
    query = "?q=x.example&sort=expiry"
    html = alice_client.get(reverse("server_list") + query).content.decode()
    pause = reverse("server_list_pause", args=[server.uuid])
    assert f'<form method="post" action="{pause}" class="inline">' in html
    assert f'action="{reverse("server_list_remove", args=[server.uuid])}"' in html
    assert (
        html.count('name="next" value="/servers/?q=x.example&amp;sort=expiry"') == 3
    )  # the row's two forms and the team switch
    response = alice_client.post(pause, {"next": "/servers/" + query})
    assert response["Location"] == "/servers/" + query
