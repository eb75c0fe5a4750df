"""The public spot-check page and the team server detail page."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from monitors.models import Server, SpotCheck
from monitors.scanning import scan_servers
from monitors.services import ca_bundle_create, server_enrol

pytestmark = pytest.mark.django_db

EVIL = "<script>alert(1)</script>"


def test_the_spot_check_form_needs_no_login(client: Client) -> None:
    response = client.get(reverse("spotcheck"))
    assert response.status_code == 200
    assert b'data-testid="spotcheck-form"' in response.content


def test_a_spot_check_gets_a_shareable_result_page_that_escapes_certificate_text(
    client, lab, lab_name, lab_settings
) -> None:
    name = lab_name("page")
    endpoint = lab.tls(lab.leaf([name], common_name=EVIL))
    response = client.post(reverse("spotcheck"), {"target": f"{name}:{endpoint.port}"})
    assert response.status_code == 302
    check = SpotCheck.objects.get()
    assert response["Location"] == reverse("spotcheck_result", args=[check.uuid])
    page = Client().get(response["Location"])  # anyone with the link, no session
    body = page.content.decode()
    assert page.status_code == 200
    assert name in body and "untrusted" in body  # the lab CA is not a public root
    assert "<script>alert" not in body and "&lt;script" in body


def test_spot_checks_are_rate_limited_per_address(client, lab_settings) -> None:
    lab_settings.KEYCHEST_SPOTCHECK_RATE = 2
    lab_settings.KEYCHEST_DNS_NAMESERVERS = []
    statuses = [client.post(reverse("spotcheck"), {"target": "127.0.0.1:1"}).status_code for _ in range(3)]
    assert statuses == [302, 302, 429]
    other = Client(REMOTE_ADDR="127.0.0.9")
    assert other.post(reverse("spotcheck"), {"target": "127.0.0.1:1"}).status_code == 302


def test_a_bad_target_is_a_form_error(client) -> None:
    response = client.post(reverse("spotcheck"), {"target": "bad host name"})
    assert response.status_code == 400
    assert not SpotCheck.objects.exists()


def test_an_unknown_result_link_is_404(client) -> None:
    assert client.get("/spotcheck/00000000-0000-0000-0000-000000000000/").status_code == 404


@pytest.fixture
def scanned(people, lab, lab_name, lab_settings) -> Server:
    bundle = ca_bundle_create(team=people.team_a, name="lab", pem=lab.root_pem)
    hosts = ["127.0.0.1", "127.0.0.2"]
    name = lab_name("detail", *hosts)
    endpoint = lab.tls(lab.leaf([name], common_name=EVIL), hosts=hosts)
    endpoint.serve(lab.leaf([name]), host="127.0.0.2")
    server = server_enrol(team=people.team_a, host=f"{name}:{endpoint.port}", ca_bundle=bundle, tags=[EVIL])
    scan_servers([Server.objects.select_related("ca_bundle").get(pk=server.pk)])
    return server


def test_the_server_detail_shows_chains_findings_and_timeline(
    alice_client, scanned, django_assert_max_num_queries
) -> None:
    with django_assert_max_num_queries(20):
        response = alice_client.get(reverse("server_detail", args=[scanned.uuid]))
    body = response.content.decode()
    assert response.status_code == 200
    assert "127.0.0.1" in body and "127.0.0.2" in body
    assert "ips_disagree" in body
    assert body.count('data-testid="chain"') == 2
    assert "address_added" in body
    assert "<script>alert" not in body and "&lt;script" in body


def test_a_member_can_ask_for_a_scan_now(bob_client, scanned) -> None:
    Server.objects.filter(pk=scanned.pk).update(next_scan_at=timezone.now() + timezone.timedelta(hours=5))
    response = bob_client.post(reverse("server_scan", args=[scanned.uuid]))
    assert response.status_code == 302
    assert Server.objects.get(pk=scanned.pk).next_scan_at <= timezone.now()


def test_another_team_gets_404_on_every_server_page(charlie_client, scanned) -> None:
    before = Server.objects.get(pk=scanned.pk).next_scan_at
    assert charlie_client.get(reverse("server_detail", args=[scanned.uuid])).status_code == 404
    assert charlie_client.post(reverse("server_scan", args=[scanned.uuid])).status_code == 404
    assert Server.objects.get(pk=scanned.pk).next_scan_at == before


def test_the_server_detail_needs_a_login(client, scanned) -> None:
    response = client.get(reverse("server_detail", args=[scanned.uuid]))
    assert response.status_code == 302 and "login" in response["Location"]


def test_a_spot_check_result_offers_to_watch_the_server(
    client, alice_client, people, lab, lab_name, lab_settings
) -> None:
    name = lab_name("watchme")
    endpoint = lab.tls(lab.leaf([name]))
    location = client.post(reverse("spotcheck"), {"target": f"{name}:{endpoint.port}"})["Location"]
    assert 'data-testid="watch-this"' not in Client().get(location).content.decode()  # no session: sign up
    page = alice_client.get(location).content.decode()
    assert 'data-testid="watch-this"' in page and f'value="{name}:{endpoint.port}"' in page
    alice_client.post(reverse("server_list_add"), {"host": f"{name}:{endpoint.port}", "protocol": "tls"})
    assert Server.objects.filter(team=people.team_a, host=name, port=endpoint.port).exists()
