from __future__ import annotations

import re
from datetime import timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext
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
    # The link text wraps only between labels (<wbr> after each dot), escaped all the same.
    assert '><span class="nw">x&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;</span>.<wbr>' in html
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


# --- the view's shared parts: one annotated query set, one counts query, forms rendered once ---


def _listed_hosts(client, query: str = "") -> tuple[set[str], str]:  # type: ignore[no-untyped-def]
    response = client.get(reverse("server_list") + query)
    assert response.status_code == 200
    html = response.content.decode()
    total = re.search(r"· (\d+) in all", html)
    return {s.host for s in response.context["servers"]}, total.group(1) if total else ""


def test_alternating_teams_each_see_only_their_own_servers_and_counts(alice_client, charlie_client, people) -> None:
    # The annotated query set is built once per process and scoped per request: requests of two
    # teams in turn, with every filter and sort, must never see (or count) the other's servers.
    for i in range(55):
        server_with_certificate(people.team_a, f"a{i}.example.com", expires_in=(i + 1) * D)
    for i in range(3):
        server_with_certificate(people.team_b, f"b{i}.example.org", expires_in=(i + 1) * D)
    Server.objects.filter(host__in=["a1.example.com", "b1.example.org"]).update(tags=["prod"])
    finding(Server.objects.get(host="b2.example.org"), "untrusted", severity="critical")
    queries = ["", "?sort=-expiry", "?status=ok", "?status=problem", "?tag=prod", "?q=example", "?page=2"]
    for query in queries:
        a_hosts, _ = _listed_hosts(alice_client, query)
        b_hosts, b_total = _listed_hosts(charlie_client, query)
        assert all(h.endswith(".example.com") for h in a_hosts), query
        assert all(h.endswith(".example.org") for h in b_hosts), query
        assert b_total == "", query  # one page: no pagination line
    assert _listed_hosts(alice_client)[1] == "55"
    assert _listed_hosts(charlie_client)[0] == {"b0.example.org", "b1.example.org", "b2.example.org"}
    assert _listed_hosts(alice_client, "?tag=prod")[0] == {"a1.example.com"}
    assert _listed_hosts(charlie_client, "?status=problem")[0] == {"b2.example.org"}
    assert _listed_hosts(alice_client, "?status=problem")[0] == set()
    assert _listed_hosts(alice_client, "?status=ok")[1] == "55"
    assert len(_listed_hosts(alice_client, "?page=2")[0]) == 5


def test_requests_never_evaluate_or_change_the_shared_annotated_query_set(alice_client, people) -> None:
    from monitors.pages import _servers_annotated_unscoped

    shared = _servers_annotated_unscoped()
    sql = str(shared.query)
    server_with_certificate(people.team_a, "a.example.com", expires_in=5 * D)
    for query in ("", "?status=down", "?tag=x", "?q=a&sort=status", "?page=2"):
        assert alice_client.get(reverse("server_list") + query).status_code == 200
    assert _servers_annotated_unscoped() is shared
    assert shared._result_cache is None
    assert str(shared.query) == sql
    assert '"monitors_server"."team_id" =' not in sql  # scoped per request, never in the shared one


def test_first_scan_progress_counts_this_teams_recent_active_servers_in_one_query(
    people, django_assert_num_queries
) -> None:
    from monitors.pages import first_scan_progress

    now = timezone.now()
    with time_machine.travel(now - timedelta(hours=2), tick=False):
        Server.objects.create(team=people.team_a, host="old-pending.example.com")
    with time_machine.travel(now, tick=False):
        Server.objects.create(team=people.team_a, host="new-pending.example.com")
        Server.objects.create(team=people.team_a, host="new-scanned.example.com", last_scan_at=now)
        Server.objects.create(team=people.team_a, host="new-paused.example.com", paused=True)
        Server.objects.create(team=people.team_a, host="new-removed.example.com", removed_at=now)
        Server.objects.create(team=people.team_b, host="other-team.example.com")
        with django_assert_num_queries(1):
            progress = first_scan_progress(people.team_a)
        assert progress == {"total": 2, "pending": 1, "done": 1}
        assert list(progress) == ["total", "pending", "done"]
        assert first_scan_progress(people.team_b) == {"total": 1, "pending": 1, "done": 0}
    with time_machine.travel(now + timedelta(hours=2), tick=False):
        assert first_scan_progress(people.team_a) == {"total": 0, "pending": 0, "done": 0}


def test_the_unfiltered_page_counts_the_teams_servers_once(alice_client, people) -> None:
    for i in range(3):
        server_with_certificate(people.team_a, f"s{i}.example.com", expires_in=(i + 1) * D)
    Server.objects.create(team=people.team_a, host="gone.example.com", removed_at=timezone.now())
    with CaptureQueriesContext(connection) as queries:
        response = alice_client.get(reverse("server_list"))
    counts = [q["sql"] for q in queries.captured_queries if "COUNT(" in q["sql"] and "monitors_server" in q["sql"]]
    assert len(counts) == 1  # the servers, the new ones and those waiting: one pass
    assert response.context["page_obj"].paginator.count == 3
    filtered = alice_client.get(reverse("server_list"), {"q": "s1"})
    assert filtered.context["page_obj"].paginator.count == 1


def test_a_viewer_page_does_not_ask_about_private_cas_and_an_editor_still_gets_the_choice(
    alice_client, client_for, people
) -> None:
    from keychest.accounts.models import Membership, Role
    from monitors.models import TeamCABundle

    TeamCABundle.objects.create(team=people.team_a, name="Corp <CA>", pem="x")
    Membership.objects.filter(user=people.bob, team=people.team_a).update(role=Role.VIEWER)
    with CaptureQueriesContext(connection) as queries:
        html = client_for(people.bob, people.team_a).get(reverse("server_list")).content.decode()
    assert not any("monitors_teamcabundle" in q["sql"] for q in queries.captured_queries)
    assert "Paste many" not in html
    html = alice_client.get(reverse("server_list")).content.decode()
    assert "Also trust this private CA" in html and "Corp &lt;CA&gt;</option>" in html


def test_the_add_forms_render_as_django_renders_them_and_private_cas_stay_with_their_team(
    alice_client, charlie_client, people
) -> None:
    from django.template import Context, Template
    from django.utils.translation import get_language

    from monitors.models import TeamCABundle
    from monitors.pages import AddServerForm, BulkAddForm, unbound_fields

    loop = Template(
        '{% for field in form %}<div class="field"><label for="{{ field.id_for_label }}">{{ field.label }}</label>'
        '{{ field }}{% if field.help_text %}<small class="help">{{ field.help_text }}</small>{% endif %}</div>{% endfor %}'
    )
    for form_class in (AddServerForm, BulkAddForm):
        expected = loop.render(Context({"form": form_class()}))
        assert loop.render(Context({"form": unbound_fields(form_class, get_language())})) == expected
        assert expected in alice_client.get(reverse("server_list")).content.decode()
    TeamCABundle.objects.create(team=people.team_a, name="Alice private CA", pem="x")
    assert "Alice private CA" in alice_client.get(reverse("server_list")).content.decode()
    charlie_html = charlie_client.get(reverse("server_list")).content.decode()
    assert "Alice private CA" not in charlie_html and "Also trust this private CA" not in charlie_html
    assert loop.render(Context({"form": BulkAddForm()})) in charlie_html


def test_the_row_forms_carry_the_pages_csrf_token_and_it_is_accepted(people) -> None:
    from django.test import Client

    server = server_with_certificate(people.team_a, "x.example.com", expires_in=30 * D)
    client = Client(enforce_csrf_checks=True)
    client.force_login(people.alice)
    html = client.get(reverse("server_list")).content.decode()
    tokens = re.findall(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert len(tokens) >= 5 and len(set(tokens)) == 1  # team switch, sign out, 2 row forms, add forms
    pause = reverse("server_list_pause", args=[server.uuid])
    assert client.post(pause, {"next": "/servers/"}).status_code == 403  # no token: refused
    assert client.post(pause, {"csrfmiddlewaretoken": tokens[0], "next": "/servers/"}).status_code == 302
    server.refresh_from_db()
    assert server.paused


# --- issue 14: refusals at input time, in words that say what to do ------------------------
@pytest.mark.parametrize(
    ("typed", "words"),
    [
        ("127.0.0.1", "127.0.0.1 is a loopback address (the machine KeyChest itself runs on)"),
        ("localhost:8443", "localhost is a loopback address (the machine KeyChest itself runs on)"),
        ("10.0.0.5", "10.0.0.5 is an address inside a private network"),
        ("https://printer.local/", "printer.local is a name that only exists inside a local network"),
    ],
)
def test_private_targets_are_refused_when_added_with_what_to_do_instead(
    alice_client, people, settings, typed, words
) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    html = alice_client.post(reverse("server_list_add"), {"host": typed}, follow=True).content.decode()
    assert f"Not added: {words}, so KeyChest cannot reach it from the internet." in html
    assert "public name or address instead" in html and "Watching" not in html
    assert not Server.objects.filter(team=people.team_a).exists()


def test_private_targets_are_refused_per_line_in_a_bulk_paste(alice_client, people, settings) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    text = "www.example.com\n127.0.0.1\nlocalhost\n10.0.0.5:8443\n"
    html = alice_client.post(reverse("server_list_bulk"), {"text": text}, follow=True).content.decode()
    assert "1 added, 3 not understood." in html
    assert "Line 2: 127.0.0.1 — 127.0.0.1 is a loopback address (the machine KeyChest itself runs on)" in html
    assert "Line 4: 10.0.0.5:8443 — 10.0.0.5 is an address inside a private network" in html
    assert [s.host for s in Server.objects.filter(team=people.team_a)] == ["www.example.com"]


def test_private_targets_are_accepted_where_the_deployment_allows_them(alice_client, people, settings) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
    alice_client.post(reverse("server_list_add"), {"host": "10.0.0.5"})
    assert Server.objects.filter(team=people.team_a, host="10.0.0.5").exists()


def test_form_errors_name_the_field_and_the_limit(alice_client, people) -> None:
    html = alice_client.post(
        reverse("server_list_add"), {"host": "www.example.com", "tags": "x" * 301}, follow=True
    ).content.decode()
    assert "Not added. Tags: at most 300 characters, please (this has 301)." in html
    assert "host or host:port" not in html.split('class="messages"')[1].split("</ul>")[0]


def test_a_name_with_a_space_says_so(alice_client, people) -> None:
    html = alice_client.post(reverse("server_list_add"), {"host": "my server"}, follow=True).content.decode()
    assert "Not added: “my server” has a space in it; a host name has none" in html
    assert "Codepoint" not in html


def test_a_pasted_url_is_watched_as_its_host_and_the_page_says_so(alice_client, people) -> None:
    html = alice_client.post(reverse("server_list_add"), {"host": "https://x.test/path"}, follow=True).content.decode()
    assert "Watching x.test:443 (read from “https://x.test/path”)" in html


def test_a_team_with_an_agent_may_add_private_targets_for_it(alice_client, people, settings) -> None:
    from agents.services import agent_create, server_assign

    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    charlies_agent, _ = agent_create(team=people.team_b, name="charlie's agent")
    server_assign(server=Server.objects.create(team=people.team_b, host="intra.example.com"), agent=charlies_agent)
    alice_client.post(reverse("server_list_add"), {"host": "10.0.0.5"})  # another team's agent changes nothing
    assert not Server.objects.filter(team=people.team_a, host="10.0.0.5").exists()
    agent, _ = agent_create(team=people.team_a, name="dc1")
    server_assign(server=Server.objects.create(team=people.team_a, host="intra.example.com"), agent=agent)
    alice_client.post(reverse("server_list_add"), {"host": "10.0.0.5"})
    assert Server.objects.filter(team=people.team_a, host="10.0.0.5").exists()


# --- issue 14 items 10 and 6: a "why" for every status; times labelled with their zone ---------
def test_the_list_says_why_a_server_is_down_or_in_error(alice_client, people) -> None:
    team = people.team_a
    down = server_with_certificate(team, "down.example.com", expires_in=40 * D)
    finding(down, "hostname_mismatch", severity="error")
    finding(
        down,
        "connect_failed",
        severity="error",
        message="Connect call failed ('127.0.0.1', 49053)",
        address="192.0.2.1",
    )
    bad = server_with_certificate(team, "bad.example.com", expires_in=40 * D)
    finding(bad, "legacy_tls", severity="warning")
    finding(bad, "untrusted", severity="error")
    Server.objects.create(team=team, host="new.example.com")
    html = alice_client.get(reverse("server_list")).content.decode()
    whys = dict(re.findall(r'data-host="([^"]+)">.*?data-testid="why" class="why">([^<]*)<', html, re.S))
    assert whys["down.example.com"] == "Nothing accepts connections on the port (192.0.2.1)"
    assert whys["bad.example.com"].startswith("The chain is not trusted")
    assert whys["new.example.com"] == "Waiting for its first scan"
    assert "Connect call failed" not in html


def test_the_detail_page_never_says_not_scanned_after_a_scan(alice_client, people) -> None:
    server = Server.objects.create(team=people.team_a, host="gone.example.com", last_scan_at=timezone.now())
    finding(server, "connect_failed", address="192.0.2.1")
    html = alice_client.get(reverse("server_detail", args=[server.uuid])).content.decode()
    assert "Not scanned yet" not in html and "reached no address of this server" in html


def test_times_on_the_detail_page_carry_the_users_zone(alice_client, people) -> None:
    people.alice.timezone = "Asia/Tokyo"
    people.alice.save(update_fields=["timezone"])
    at = timezone.now().replace(hour=7, minute=48, second=0, microsecond=0)
    server = Server.objects.create(team=people.team_a, host="tokyo.example.com", last_scan_at=at)
    html = alice_client.get(reverse("server_detail", args=[server.uuid])).content.decode()
    assert "16:48 JST" in html and "16:48 UTC" not in html and "07:48 UTC" not in html


# --- issue 14 item 7: bulk errors stay; progress counts what this person just added ----------
def test_bulk_errors_outlive_the_progress_reload_and_progress_counts_the_last_paste(alice_client, people) -> None:
    for i in range(15):  # added by someone else within the hour, still waiting
        Server.objects.create(team=people.team_a, host=f"earlier{i}.example.com")
    text = "a.example.com\nb.example.com\nmy server\n127.0.0.1:99999\n"
    html = alice_client.post(reverse("server_list_bulk"), {"text": text}, follow=True).content.decode()
    assert "0 of 2 new servers scanned" in html  # not "15 of 17"
    Server.objects.filter(host__in=["a.example.com", "b.example.com"]).update(last_scan_at=timezone.now())
    fragment = alice_client.get(reverse("server_list_progress"), {"was_pending": "1"}, headers={"HX-Request": "true"})
    assert fragment["HX-Refresh"] == "true"
    # The page the refresh loads still lists the lines that were not added.
    card = alice_client.get(reverse("server_list")).content.decode().split('data-testid="bulk-errors"')[1]
    assert "Line 3: my server" in card and "Line 4: 127.0.0.1:99999" in card
    assert "has a space in it" in card and "out of range" in card
