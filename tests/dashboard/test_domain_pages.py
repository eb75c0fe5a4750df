from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from certificates.models import CertificateName
from certificates.services import certificate_store_der
from kcproto.names import reversed_name
from lab.ctlog.certgen import issue, make_ca
from monitors.models import DiscoveredHost, Server, WatchedDomain

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def ca():
    return make_ca("Domain Pages CA", parent=make_ca("Domain Pages Root"))


def logged(ca, names, *, final=True, days_ago=10):
    issuance = issue(ca, names, not_before=datetime.now(UTC) - timedelta(days=days_ago))
    pre = certificate_store_der(der=issuance.precertificate, source="ct", source_ref="log:1")
    cert = certificate_store_der(der=issuance.certificate, source="ct", source_ref="log:2") if final else None
    return pre, cert


def test_watching_a_domain_shows_its_ct_history_with_precert_and_cert_merged(alice_client, people, ca) -> None:
    _pre, cert = logged(ca, ["www.shop.example"])
    only_pre, _ = logged(ca, ["api.shop.example"], final=False, days_ago=3)
    logged(ca, ["www.other.example"])
    response = alice_client.post(reverse("domain_add"), {"domain": "Shop.Example"})
    watched = WatchedDomain.objects.get(team=people.team_a, domain="shop.example")
    assert response["Location"] == reverse("domain_detail", args=[watched.uuid])
    page = alice_client.get(response["Location"])
    rows = {c.sha256: c for c in page.context["rows"]}
    assert set(rows) == {cert.sha256, only_pre.sha256}
    assert rows[cert.sha256].has_precert and rows[cert.sha256].has_final
    assert rows[only_pre.sha256].has_precert and not rows[only_pre.sha256].has_final
    # The hosts in the table were discovered at once.
    hosts = alice_client.get(response["Location"], {"tab": "hosts"}).context["rows"]
    assert {h.name for h in hosts} == {"www.shop.example", "api.shop.example"}


def test_a_bad_domain_is_refused_with_a_reason(alice_client, people) -> None:
    response = alice_client.post(reverse("domain_add"), {"domain": "*.example.com"}, follow=True)
    assert "Not watched" in response.content.decode()
    assert not WatchedDomain.objects.filter(team=people.team_a).exists()


@pytest.mark.parametrize("suffix", ["com", "co.uk", "CO.UK.", "github.io", "org"])
def test_a_public_suffix_is_refused_when_added_with_a_plain_message(alice_client, people, suffix) -> None:
    response = alice_client.post(reverse("domain_add"), {"domain": suffix}, follow=True)
    text = response.content.decode()
    assert "is a public suffix" in text and "Watch your own domain instead" in text
    assert not WatchedDomain.objects.filter(team=people.team_a).exists()
    # A registered domain right under it is fine.
    alice_client.post(reverse("domain_add"), {"domain": f"shop.{suffix}"})
    assert WatchedDomain.objects.filter(team=people.team_a).count() == 1


def _domain_with_hosts(team, *names, ca=None):
    """Hosts discovered from certificates read from a CT log (stored here when `ca` is given)."""
    if ca is not None:
        for n in names:
            logged(ca, [n])
    watched = WatchedDomain.objects.create(team=team, domain="shop.example")
    now = timezone.now()
    hosts = [
        DiscoveredHost.objects.create(team=team, watched_domain=watched, name=n, first_seen_at=now, last_seen_at=now)
        for n in names
    ]
    return watched, hosts


def test_watch_a_discovered_host_and_turn_on_auto_watch(alice_client, people, ca) -> None:
    watched, (www, _api, _beta) = _domain_with_hosts(
        people.team_a, "www.shop.example", "api.shop.example", "beta.shop.example", ca=ca
    )
    alice_client.post(reverse("domain_host_watch", args=[watched.uuid, www.uuid]))
    assert Server.objects.filter(team=people.team_a, host="www.shop.example", port=443).exists()
    page = alice_client.get(reverse("domain_detail", args=[watched.uuid]), {"tab": "hosts"})
    assert {h.name: h.is_watched for h in page.context["rows"]} == {
        "api.shop.example": False,
        "beta.shop.example": False,
        "www.shop.example": True,
    }
    alice_client.post(reverse("domain_auto_watch", args=[watched.uuid]), {"enable": "1"})
    watched.refresh_from_db()
    assert watched.auto_watch
    assert set(Server.objects.filter(team=people.team_a).values_list("host", flat=True)) == {
        "www.shop.example",
        "api.shop.example",
        "beta.shop.example",
    }


def test_removing_a_domain_keeps_its_hosts(alice_client, people, ca) -> None:
    watched, _ = _domain_with_hosts(people.team_a, "www.shop.example", ca=ca)
    alice_client.post(reverse("domain_remove", args=[watched.uuid]))
    watched.refresh_from_db()
    assert watched.removed_at is not None
    assert DiscoveredHost.objects.filter(watched_domain=watched).count() == 1
    assert alice_client.get(reverse("domain_detail", args=[watched.uuid])).status_code == 404


def test_charlie_gets_404_on_every_domain_page_of_alice(charlie_client, people, ca) -> None:
    watched, (host,) = _domain_with_hosts(people.team_a, "www.shop.example", ca=ca)
    for url in (reverse("domain_detail", args=[watched.uuid]),):
        assert charlie_client.get(url).status_code == 404
    for url in (
        reverse("domain_remove", args=[watched.uuid]),
        reverse("domain_auto_watch", args=[watched.uuid]),
        reverse("domain_host_watch", args=[watched.uuid, host.uuid]),
    ):
        assert charlie_client.post(url, {"enable": "1"}).status_code == 404
    assert "shop.example" not in charlie_client.get(reverse("domain_list")).content.decode()
    watched.refresh_from_db()
    assert watched.removed_at is None and not watched.auto_watch
    assert not Server.objects.filter(host="www.shop.example").exists()


def test_hostile_names_from_ct_are_escaped(alice_client, people, ca) -> None:
    _, cert = logged(ca, ["www.shop.example"])
    evil = "<script>alert(1)</script>.shop.example"
    CertificateName.objects.filter(certificate=cert).update(name=evil, reversed_name=reversed_name(evil))
    watched, _ = _domain_with_hosts(people.team_a, evil)
    for tab in ("history", "hosts"):
        html = alice_client.get(reverse("domain_detail", args=[watched.uuid]), {"tab": tab}).content.decode()
        assert "<script>alert(1)" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_history_query_count_does_not_grow(alice_client, people, ca, django_assert_max_num_queries) -> None:
    watched = WatchedDomain.objects.create(team=people.team_a, domain="shop.example")
    for i in range(2):
        logged(ca, [f"h{i}.shop.example"])
    url = reverse("domain_detail", args=[watched.uuid])
    with django_assert_max_num_queries(30) as small:
        assert alice_client.get(url).status_code == 200
    for i in range(2, 25):
        logged(ca, [f"h{i}.shop.example", f"alt{i}.shop.example"])
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert len(alice_client.get(url).context["rows"]) == 25


def test_a_pasted_url_is_watched_as_its_domain_as_servers_read_it(alice_client, people) -> None:
    html = alice_client.post(reverse("domain_add"), {"domain": "https://x.test/path"}, follow=True).content.decode()
    assert "Watching x.test (read from “https://x.test/path”)" in html
    assert WatchedDomain.objects.get(team=people.team_a).domain == "x.test"


def test_a_domain_with_a_space_says_so_in_plain_words(alice_client, people) -> None:
    html = alice_client.post(reverse("domain_add"), {"domain": "my domain.com"}, follow=True).content.decode()
    assert "Not watched: “my domain.com” has a space in it" in html and "Codepoint" not in html
