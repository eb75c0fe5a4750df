"""Another team's uploaded and scanned certificates stay private (issue 22 item 2), and the "ct"
label means "read from a CT log" (issue 14 item 5).

Alice (team A) uploads a certificate for secret-intranet.example.org, and her team's scan sees
an appliance's self-signed certificate for nas.example.org. A certificate for www.example.org was
read from a CT log. Charlie (team B) watches example.org with auto-watch on: he sees the CT one
and nothing of alice's, on every page, in the PEM download, in the API and in his hosts.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from api.enrolment import certificate_upload
from certificates.models import Certificate
from certificates.services import certificate_store_der
from lab.ctlog.certgen import Issuer, issue, make_ca
from lab.pki import self_signed
from monitors.domains import domain_watch
from monitors.models import DiscoveredHost, Server
from monitors.visibility import visible_hosts
from tests.api.conftest import scan_result_for

pytestmark = pytest.mark.django_db


@pytest.fixture(scope="module")
def ca() -> Issuer:
    return make_ca("Private Certificates CA")


def _scan(team, der: bytes, host: str) -> Certificate:  # type: ignore[no-untyped-def]
    server = Server.objects.create(team=team, host=host, port=443, last_scan_at=timezone.now())
    return Certificate.objects.get(sha256=scan_result_for(server, address="192.0.2.20", der=der).leaf_sha256)


@pytest.fixture
def setting(people, ca):  # type: ignore[no-untyped-def]
    recent = datetime.now(UTC) - timedelta(days=5)
    uploaded = certificate_upload(
        team=people.team_a,
        der=issue(ca, ["secret-intranet.example.org"], not_before=recent).certificate,
        user=people.alice,
    ).certificate
    scanned = _scan(people.team_a, self_signed(["nas.example.org"]).der, "nas.example.org")
    logged = issue(ca, ["www.example.org"], not_before=recent)
    certificate_store_der(der=logged.precertificate, source="ct", source_ref="log:1")
    public = certificate_store_der(der=logged.certificate, source="ct", source_ref="log:2")
    return uploaded, scanned, public


def test_charlie_watching_the_parent_domain_gets_404_for_alices_private_certificates(
    charlie_client, people, setting
) -> None:
    uploaded, scanned, public = setting
    domain_watch(team=people.team_b, domain="example.org", auto_watch=True)
    for private in (uploaded, scanned):
        assert charlie_client.get(reverse("certificate_detail", args=[private.sha256])).status_code == 404
        assert charlie_client.get(reverse("certificate_pem", args=[private.sha256])).status_code == 404
        assert charlie_client.get(f"/api/v1/certificates/{private.sha256}/").status_code == 404
    # The public one he sees, labelled with its true source.
    assert charlie_client.get(reverse("certificate_detail", args=[public.sha256])).context["sources"] == ["ct"]
    assert charlie_client.get(reverse("certificate_pem", args=[public.sha256])).status_code == 200
    detail = charlie_client.get(f"/api/v1/certificates/{public.sha256}/").json()
    assert detail["seen_by"] == ["ct"] and detail["sources"] == ["ct"]
    listed = charlie_client.get("/api/v1/certificates/").json()["results"]
    # The API lists the precertificate beside its certificate; both from the log.
    assert {c["subject"] for c in listed} == {"CN=www.example.org"}
    assert [c["sha256"] for c in listed if not c["is_precertificate"]] == [public.sha256]
    assert all(c["seen_by"] == ["ct"] for c in listed)
    page = charlie_client.get(reverse("certificate_list"))
    assert [c.sha256 for c in page.context["certificates"]] == [public.sha256]


def test_alices_internal_names_never_become_charlies_hosts_or_servers(charlie_client, people, setting) -> None:
    watched = domain_watch(team=people.team_b, domain="example.org", auto_watch=True)
    assert set(DiscoveredHost.objects.filter(team=people.team_b).values_list("name", flat=True)) == {"www.example.org"}
    assert set(Server.objects.for_team(people.team_b).values_list("host", flat=True)) == {"www.example.org"}
    api_hosts = charlie_client.get(f"/api/v1/domains/{watched.uuid}/hosts/").json()
    assert [h["name"] for h in api_hosts] == ["www.example.org"]
    html = charlie_client.get(reverse("domain_detail", args=[watched.uuid]), {"tab": "hosts"}).content.decode()
    assert "www.example.org" in html and "secret-intranet" not in html and "nas.example.org" not in html
    history = charlie_client.get(reverse("domain_detail", args=[watched.uuid])).context["rows"]
    assert [c.subject for c in history] == ["CN=www.example.org"]
    api_history = charlie_client.get(f"/api/v1/domains/{watched.uuid}/certificates/").json()
    assert [c["subject"] for c in api_history] == ["CN=www.example.org"]


def test_hosts_recorded_from_private_data_before_the_fix_are_hidden_and_never_auto_watched(
    charlie_client, people, setting
) -> None:
    watched = domain_watch(team=people.team_b, domain="example.org")
    now = timezone.now()
    leaked = DiscoveredHost.objects.create(
        team=people.team_b,
        watched_domain=watched,
        name="secret-intranet.example.org",
        first_seen_at=now,
        last_seen_at=now,
    )
    assert [h.name for h in visible_hosts(watched)] == ["www.example.org"]
    [listed] = charlie_client.get(reverse("domain_list")).context["domains"]
    assert (listed.hosts, listed.unwatched) == (1, 1)  # not counted either
    charlie_client.post(reverse("domain_auto_watch", args=[watched.uuid]), {"enable": "1"})
    assert set(Server.objects.for_team(people.team_b).values_list("host", flat=True)) == {"www.example.org"}
    watch_it = reverse("domain_host_watch", args=[watched.uuid, leaked.uuid])
    assert charlie_client.post(watch_it).status_code == 404
    assert not Server.objects.filter(team=people.team_b, host="secret-intranet.example.org").exists()
    assert DiscoveredHost.objects.filter(pk=leaked.pk).exists()  # kept: history is data


def test_the_owner_sees_her_own_certificates_labelled_truly(alice_client, people, setting) -> None:
    uploaded, scanned, public = setting
    watched = domain_watch(team=people.team_a, domain="example.org")
    rows = {c.sha256: c for c in alice_client.get(reverse("certificate_list")).context["certificates"]}
    assert rows[uploaded.sha256].source_list == ["upload"]
    assert rows[public.sha256].source_list == ["ct"]
    # The appliance's self-signed certificate carries no "ct" badge (issue 14 item 5) ...
    html = alice_client.get(reverse("certificate_detail", args=[scanned.sha256])).content.decode()
    assert '<span class="tag">scan</span>' in html and '<span class="tag">ct</span>' not in html
    api = {
        c["sha256"]: c["seen_by"]
        for c in alice_client.get("/api/v1/certificates/").json()["results"]
        if not c["is_precertificate"]
    }
    assert api == {uploaded.sha256: ["upload"], scanned.sha256: ["scan"], public.sha256: ["ct"]}
    only_ct = alice_client.get("/api/v1/certificates/?source=ct").json()["results"]
    assert {c["subject"] for c in only_ct} == {"CN=www.example.org"}
    listed_ct = alice_client.get(reverse("certificate_list"), {"source": "ct"}).context["certificates"]
    assert [c.sha256 for c in listed_ct] == [public.sha256]
    # ... the tile counts only what was read from a log ...
    tile = alice_client.get(reverse("dashboard")).content.decode()
    assert "1 known from CT" in tile
    # ... and the domain's history says "not in CT" for her own, "logged as" for the public one.
    history = {c.sha256: c for c in alice_client.get(reverse("domain_detail", args=[watched.uuid])).context["rows"]}
    assert set(history) == {uploaded.sha256, scanned.sha256, public.sha256}
    for own in (uploaded, scanned):
        assert not history[own.sha256].has_final and not history[own.sha256].has_precert
    assert history[public.sha256].has_final and history[public.sha256].has_precert


def test_a_private_final_certificate_neither_shows_nor_hides_the_public_precertificate(
    charlie_client, people, ca
) -> None:
    # The log carried the precertificate; only alice's scan saw the final certificate.
    issuance = issue(ca, ["shop.example.org"], not_before=datetime.now(UTC) - timedelta(days=3))
    pre = certificate_store_der(der=issuance.precertificate, source="ct", source_ref="log:9")
    final = _scan(people.team_a, issuance.certificate, "shop.example.org")
    watched = domain_watch(team=people.team_b, domain="example.org")
    api = charlie_client.get(f"/api/v1/domains/{watched.uuid}/certificates/").json()
    assert [c["sha256"] for c in api] == [pre.sha256]
    by_domain = charlie_client.get("/api/v1/certificates/", {"domain": "shop.example.org"}).json()["results"]
    assert [c["sha256"] for c in by_domain] == [pre.sha256]
    history = charlie_client.get(reverse("domain_detail", args=[watched.uuid])).context["rows"]
    assert [c.sha256 for c in history] == [pre.sha256]
    assert history[0].has_precert and not history[0].has_final
    listed = charlie_client.get(reverse("certificate_list")).context["certificates"]
    assert [c.sha256 for c in listed] == [pre.sha256]
    assert charlie_client.get(reverse("certificate_detail", args=[final.sha256])).status_code == 404
