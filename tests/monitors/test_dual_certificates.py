"""RSA and ECDSA certificates side by side on one address: both are found, followed and judged."""

from __future__ import annotations

import datetime as dt

import pytest

from certificates.models import Certificate
from kcproto import tlsprobe
from lab.pki import now
from monitors.models import Finding, ScanResult, Server, TimelineEntry
from monitors.scanning import scan_servers
from monitors.services import ca_bundle_create, server_enrol

pytestmark = pytest.mark.django_db
D = dt.timedelta(days=1)


@pytest.fixture
def watch(people, lab, lab_settings):  # type: ignore[no-untyped-def]
    bundle = ca_bundle_create(team=people.team_a, name="lab root", pem=lab.root_pem)

    def make(name: str, port: int) -> Server:
        return server_enrol(team=people.team_a, host=f"{name}:{port}", ca_bundle=bundle)

    return make


def scan(server: Server) -> dict[str, str]:
    scan_servers([Server.objects.select_related("ca_bundle").get(pk=server.pk)])
    return dict(Finding.objects.filter(server=server, resolved_at=None).values_list("code", "message"))


def test_the_probe_finds_the_other_key_family_only_where_it_exists(lab, lab_name) -> None:
    name = lab_name("dual-probe")
    dual = lab.tls(lab.leaf([name]))
    dual.also_serve(lab.leaf([name], key_kind="rsa"))
    single_ec = lab.tls(lab.leaf([name]))
    single_rsa = lab.tls(lab.leaf([name], key_kind="rsa"))

    found = tlsprobe.probe_sync("127.0.0.1", dual.port, sni=name, allow_private=True, alternate_key=True)
    assert found.ok
    assert tlsprobe.key_family(found.chain_der[0]) == "ecdsa"
    assert tlsprobe.key_family(found.alt_chain_der[0]) == "rsa"
    assert len(found.alt_chain_der) == 2  # the leaf and its intermediate

    for endpoint in (single_ec, single_rsa):
        alone = tlsprobe.probe_sync("127.0.0.1", endpoint.port, sni=name, allow_private=True, alternate_key=True)
        assert alone.ok and alone.alt_chain_der == []
    # Not asked: not looked for.
    plain = tlsprobe.probe_sync("127.0.0.1", dual.port, sni=name, allow_private=True)
    assert plain.alt_chain_der == []


def test_an_expiring_rsa_certificate_beside_a_fresh_ecdsa_one_is_reported(lab, lab_name, watch) -> None:
    name = lab_name("dual")
    first_issued = lab.leaf([name])
    endpoint = lab.tls(first_issued)
    old_rsa = lab.leaf([name], key_kind="rsa", not_before=now() - 80 * D, not_after=now() + 10 * D)
    endpoint.also_serve(old_rsa)
    server = watch(name, endpoint.port)

    found = scan(server)
    assert set(found) == {"renewal_overdue"}
    assert found["renewal_overdue"].startswith("RSA certificate: Renewal overdue")
    first = ScanResult.objects.get(server=server, current=True, alternate=False)
    second = ScanResult.objects.get(server=server, current=True, alternate=True)
    assert first.address == second.address == "127.0.0.1"
    assert second.leaf_sha256 != first.leaf_sha256 and second.not_after < first.not_after
    assert Certificate.objects.get(sha256=second.leaf_sha256).key_type == "rsa"
    assert TimelineEntry.objects.filter(server=server, kind="alternate_added").count() == 1

    # Nothing changed: the rows are only touched, and the second certificate is still followed
    # on a scan where the daily cadence is not due.
    assert Server.objects.get(pk=server.pk).legacy_checked_at is not None
    assert set(scan(server)) == {"renewal_overdue"}
    assert ScanResult.objects.filter(server=server).count() == 2

    # Only the RSA certificate is renewed: a new row for it alone, and the finding resolves.
    endpoint.serve(first_issued)
    endpoint.also_serve(lab.leaf([name], key_kind="rsa"))
    found = scan(server)
    assert "renewal_overdue" not in found
    assert Finding.objects.get(server=server, code="renewal_overdue").resolved_at is not None
    assert ScanResult.objects.filter(server=server).count() == 3
    assert ScanResult.objects.get(server=server, current=True, alternate=False).pk == first.pk
    renewed = ScanResult.objects.get(server=server, current=True, alternate=True)
    assert TimelineEntry.objects.filter(server=server, kind="certificate_changed").count() == 1
    assert renewed.pk != second.pk

    # The second certificate goes away: its row is retired on the next look.
    endpoint.serve(first_issued)
    scan(server)
    assert not ScanResult.objects.filter(server=server, current=True, alternate=True).exists()
    assert TimelineEntry.objects.filter(server=server, kind="alternate_removed").count() == 1


def test_one_problem_of_both_certificates_is_one_finding_naming_both(lab, lab_name, watch) -> None:
    name = lab_name("dual-expired")
    expired = {"not_before": now() - 100 * D, "not_after": now() - D}
    endpoint = lab.tls(lab.leaf([name], **expired))
    endpoint.also_serve(lab.leaf([name], key_kind="rsa", **expired))
    server = watch(name, endpoint.port)
    found = scan(server)
    assert set(found) == {"expired"}
    assert "; RSA certificate: The certificate expired" in found["expired"]


def test_the_second_look_can_be_switched_off(lab, lab_name, watch, settings) -> None:
    settings.KEYCHEST_SCAN_ALTERNATE_KEY = False
    name = lab_name("dual-off")
    endpoint = lab.tls(lab.leaf([name]))
    endpoint.also_serve(lab.leaf([name], key_kind="rsa", not_before=now() - 100 * D, not_after=now() - D))
    server = watch(name, endpoint.port)
    assert scan(server) == {}
    assert not ScanResult.objects.filter(server=server, alternate=True).exists()


def test_both_certificates_reach_the_expiry_api_and_the_server_page(people, lab, lab_name, watch, alice_client) -> None:
    from django.urls import reverse
    from rest_framework.test import APIClient

    from api.models import Scope
    from api.services import apikey_create

    name = lab_name("dual-api")
    endpoint = lab.tls(lab.leaf([name]))
    endpoint.also_serve(lab.leaf([name], key_kind="rsa", not_before=now() - 80 * D, not_after=now() + 10 * D))
    server = watch(name, endpoint.port)
    scan(server)
    client = APIClient()
    client.credentials(
        HTTP_AUTHORIZATION=f"Bearer {apikey_create(team=people.team_a, user=people.alice, scopes=[Scope.READ]).secret}"
    )
    answer = client.get(f"/api/v1.0/servers/expiration/{name}").json()
    assert [entry["ip"] for entry in answer["results"]] == ["127.0.0.1", "127.0.0.1"]
    assert answer["renewal_due"] is True  # the RSA certificate is due; the ECDSA one is not
    assert sorted(entry["renewal_due"] for entry in answer["results"]) == [False, True]
    page = alice_client.get(reverse("server_detail", args=[server.uuid])).content.decode()
    assert 'data-testid="alternate"' in page


def test_the_spot_check_shows_both_certificates(lab, lab_name, lab_settings, client) -> None:
    from monitors.spotcheck import spotcheck

    name = lab_name("dual-spot")
    endpoint = lab.tls(lab.leaf([name]))
    endpoint.also_serve(lab.leaf([name], key_kind="rsa", not_before=now() - 100 * D, not_after=now() - D))
    result = spotcheck(target=f"{name}:{endpoint.port}", ca_pem=lab.root_pem)
    [address] = result.addresses
    assert address.validation and address.validation.leaf and address.validation.leaf.key_type.startswith("ec")
    assert address.alternate and address.alternate.leaf and address.alternate.leaf.key_type == "rsa"
    assert [f.code for f in result.findings] == ["expired"]
    assert result.findings[0].message.startswith("RSA certificate: The certificate expired")
    shown = result.as_dict()["addresses"][0]
    assert shown["chain"][0]["key"].startswith("ec") and shown["alternate_chain"][0]["key"].startswith("rsa")
