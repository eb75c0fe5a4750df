from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from certificates.services import certificate_store_der
from lab.ctlog.certgen import issue, make_ca
from monitors.models import ScanResult, Server, WatchedDomain
from tests.dashboard.factories import sha

pytestmark = pytest.mark.django_db
D = timedelta(days=1)


@pytest.fixture(scope="module")
def ca():
    root = make_ca("Dashboard Test Root")
    return make_ca("Dashboard Test CA", parent=root)


def stored(ca, names, *, days_left=30, lifetime=90, source="scan", precert=False):
    not_before = datetime.now(UTC) - timedelta(days=lifetime - days_left)
    issuance = issue(ca, names, not_before=not_before, lifetime=timedelta(days=lifetime))
    der = issuance.precertificate if precert else issuance.certificate
    return certificate_store_der(der=der, source=source, source_ref="test"), issuance


def deploy(team, cert, host, *, current=True, chain=()):
    server, _ = Server.objects.get_or_create(team=team, host=host, defaults={"last_scan_at": timezone.now()})
    now = timezone.now()
    return ScanResult.objects.create(
        team=team,
        server=server,
        address="192.0.2.10",
        current=current,
        state_digest=sha(host + cert.sha256),
        leaf_sha256=cert.sha256,
        chain_sha256=[cert.sha256, *chain],
        subject=cert.subject,
        issuer=cert.issuer,
        names=[host],
        not_before=cert.not_before,
        not_after=cert.not_after,
        first_seen=now - D,
        last_seen=now,
    )


def test_the_inventory_lists_scanned_and_ct_certificates_one_row_per_issuance(alice_client, people, ca) -> None:
    team = people.team_a
    served, _ = stored(ca, ["www.shop.example"])
    deploy(team, served, "www.shop.example")
    WatchedDomain.objects.create(team=team, domain="ct.example")
    from_ct, issuance = stored(ca, ["api.ct.example"], source="ct", days_left=80)
    certificate_store_der(der=issuance.precertificate, source="ct", source_ref="log:2")
    stored(ca, ["unrelated.example"], source="ct")
    response = alice_client.get(reverse("certificate_list"))
    rows = {c.sha256: c for c in response.context["certificates"]}
    assert set(rows) == {served.sha256, from_ct.sha256}
    assert rows[served.sha256].source_list == ["scan"] and rows[served.sha256].deployed
    assert rows[from_ct.sha256].source_list == ["ct"] and not rows[from_ct.sha256].deployed


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"window": "7"}, {"soon"}),
        ({"window": "expired"}, {"old"}),
        ({"window": "later"}, {"far"}),
        ({"source": "ct"}, {"far"}),
        ({"source": "scan"}, {"soon", "old"}),
        ({"deployed": "yes"}, {"soon"}),
        ({"deployed": "no"}, {"old", "far"}),
        ({"issuer": "dashboard test ca"}, {"soon", "old", "far"}),
        ({"issuer": "nobody"}, set()),
        ({"q": "SOON"}, {"soon"}),
    ],
)
def test_inventory_filters(alice_client, people, ca, params, expected) -> None:
    team = people.team_a
    soon, _ = stored(ca, ["soon.example"], days_left=3)
    deploy(team, soon, "soon.example")
    old, _ = stored(ca, ["old.example"], days_left=-3)
    deploy(team, old, "old.example", current=False)
    WatchedDomain.objects.create(team=team, domain="far.example")
    stored(ca, ["far.example"], days_left=300, lifetime=398, source="ct")
    response = alice_client.get(reverse("certificate_list"), params)
    assert {c.name_list[0].split(".")[0] for c in response.context["certificates"]} == expected


def test_the_detail_page_shows_chain_names_deployment_and_downloads_pem(alice_client, people, ca) -> None:
    team = people.team_a
    cert, _ = stored(ca, ["www.shop.example", "shop.example"])
    intermediate = certificate_store_der(der=ca.der, source="scan")
    deploy(team, cert, "www.shop.example", chain=(intermediate.sha256,))
    html = alice_client.get(reverse("certificate_detail", args=[cert.sha256])).content.decode()
    assert "shop.example" in html and "www.shop.example:443" in re.sub(r"<[^>]+>", "", html)  # names wrap at dots
    assert "Dashboard Test CA" in html
    pem = alice_client.get(reverse("certificate_pem", args=[cert.sha256]))
    assert pem.status_code == 200
    from cryptography import x509

    assert (
        x509.load_pem_x509_certificate(pem.content)
        .fingerprint(__import__("cryptography.hazmat.primitives.hashes", fromlist=["SHA256"]).SHA256())
        .hex()
        == cert.sha256
    )


def test_charlie_gets_404_for_alices_certificates(charlie_client, alice_client, people, ca) -> None:
    cert, _ = stored(ca, ["secret.alice.example"])
    deploy(people.team_a, cert, "secret.alice.example")
    assert alice_client.get(reverse("certificate_detail", args=[cert.sha256])).status_code == 200
    assert charlie_client.get(reverse("certificate_detail", args=[cert.sha256])).status_code == 404
    assert charlie_client.get(reverse("certificate_pem", args=[cert.sha256])).status_code == 404
    assert "secret.alice" not in charlie_client.get(reverse("certificate_list")).content.decode()


def test_a_certificate_nobody_in_the_team_has_seen_is_404(alice_client, people, ca) -> None:
    cert, _ = stored(ca, ["stranger.example"], source="ct")
    assert alice_client.get(reverse("certificate_detail", args=[cert.sha256])).status_code == 404


def test_hostile_names_in_a_certificate_are_escaped(alice_client, people, ca) -> None:
    from certificates.models import CertificateName

    cert, _ = stored(ca, ["evil.example"])
    deploy(people.team_a, cert, "evil.example")
    evil = "<script>alert(1)</script>"
    CertificateName.objects.filter(certificate=cert).update(name=evil)
    type(cert).objects.filter(pk=cert.pk).update(subject=f"CN={evil}")
    for url in (reverse("certificate_list"), reverse("certificate_detail", args=[cert.sha256])):
        html = alice_client.get(url).content.decode()
        assert "<script>alert(1)" not in html
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_the_inventory_query_count_does_not_grow(alice_client, people, ca, django_assert_max_num_queries) -> None:
    team = people.team_a
    for i in range(3):
        cert, _ = stored(ca, [f"h{i}.example", f"alt{i}.example"], days_left=i + 1)
        deploy(team, cert, f"h{i}.example")
    with django_assert_max_num_queries(30) as small:
        assert alice_client.get(reverse("certificate_list")).status_code == 200
    for i in range(3, 40):
        cert, _ = stored(ca, [f"h{i}.example"], days_left=i + 1)
        deploy(team, cert, f"h{i}.example")
    with django_assert_max_num_queries(len(small.captured_queries)):
        assert alice_client.get(reverse("certificate_list")).status_code == 200


# --- issue 14 item 12: every fingerprint shown leads somewhere ---------------------------------
def test_a_shortened_fingerprint_and_a_precertificate_lead_to_the_certificate(
    alice_client, charlie_client, people, ca
) -> None:
    not_before = datetime.now(UTC) - timedelta(days=10)
    issuance = issue(ca, ["www.links.example"], not_before=not_before, lifetime=timedelta(days=90))
    final = certificate_store_der(der=issuance.certificate, source="scan", source_ref="test")
    precert = certificate_store_der(der=issuance.precertificate, source="ct", source_ref="test")
    deploy(people.team_a, final, "www.links.example")
    final_url = reverse("certificate_detail", args=[final.sha256])
    for quoted in (final.sha256[:12], precert.sha256[:12], precert.sha256):
        response = alice_client.get(f"/certificates/{quoted}/")
        assert (response.status_code, response["Location"]) == (302, final_url), quoted
        assert charlie_client.get(f"/certificates/{quoted}/").status_code == 404  # another team's
    assert alice_client.get("/certificates/000000000000/").status_code == 404


def test_the_intermediate_of_a_served_chain_has_a_page(alice_client, charlie_client, people, ca) -> None:
    leaf, _ = stored(ca, ["www.chain.example"])
    intermediate = certificate_store_der(der=ca.der, source="scan", source_ref="test")
    deploy(people.team_a, leaf, "www.chain.example", chain=[intermediate.sha256])
    assert alice_client.get(reverse("certificate_detail", args=[intermediate.sha256])).status_code == 200
    assert charlie_client.get(reverse("certificate_detail", args=[intermediate.sha256])).status_code == 404


def test_fingerprints_in_findings_and_chains_are_links(alice_client, people, ca) -> None:
    from tests.dashboard.factories import finding

    leaf, _ = stored(ca, ["www.quoted.example"])
    result = deploy(people.team_a, leaf, "www.quoted.example")
    finding(
        result.server, "newer_certificate_not_deployed", message=f"a newer one ({leaf.sha256[:12]}) is not deployed"
    )
    html = alice_client.get(reverse("server_detail", args=[result.server.uuid])).content.decode()
    assert f'<a class="hash" href="/certificates/{leaf.sha256[:12]}/"><code>{leaf.sha256[:12]}</code></a>' in html
    assert f'href="/certificates/{leaf.sha256}/"' in html  # the chain table
