"""Chains and names judged as clients judge them, in real team scans of lab servers: every fault
has its finding, every finding that makes clients refuse is an error, team CAs keep working."""

from __future__ import annotations

import pytest

from kcproto.checks import clients_refuse
from lab.pki import CA, self_signed
from lab.scenarios import SCENARIOS
from monitors.models import Finding, ScanResult, Server
from monitors.scanning import scan_servers
from monitors.services import ca_bundle_create, server_enrol

pytestmark = pytest.mark.django_db

# Scenarios whose certificate is made for the host they are given (so any lab name works).
BY_LABEL = {s.label: s for s in SCENARIOS}
CHAIN_AND_NAME = [
    "issuer-not-ca",
    "no-keycertsign",
    "expired-intermediate",
    "client-auth-only",
    "path-length",
    "name-constraints",
    "cn-only",
    "trailing-dot",
    "ip-like-cn",
    "sha1",
    "weak-key",
    "ca-leaf",
    "incomplete",
    "tls10-only",
    "tls11-only",
]


def _scan(team, lab_root_pem: str, host: str, port: int) -> tuple[Server, list[Finding]]:  # type: ignore[no-untyped-def]
    bundle = ca_bundle_create(team=team, name=f"lab root {host}", pem=lab_root_pem)
    server = server_enrol(team=team, host=f"{host}:{port}", ca_bundle=bundle)
    scan_servers([Server.objects.select_related("ca_bundle").get(pk=server.pk)])
    return server, list(Finding.objects.filter(server=server, resolved_at=None))


@pytest.mark.parametrize("label", CHAIN_AND_NAME)
def test_each_fault_has_its_finding_and_clients_refuse(people, lab, lab_name, lab_settings, label: str) -> None:
    scenario = BY_LABEL[label]
    host = lab_name(label)
    endpoint = scenario.build(lab, host)
    _server, findings = _scan(people.team_a, lab.root_pem, host, endpoint.port)
    assert {f.code for f in findings} == scenario.expect
    # Every one of these makes current clients refuse the connection: an error, never a warning.
    assert all(f.severity == "error" for f in findings)
    from kcproto.checks import FindingSpec

    assert clients_refuse([FindingSpec(f.code, f.message, f.address, level=f.severity) for f in findings])


def test_the_reasons_are_spelled_out(people, lab, lab_name, lab_settings) -> None:
    host = lab_name("reasons")
    endpoint = BY_LABEL["cn-only"].build(lab, host)
    _, findings = _scan(people.team_a, lab.root_pem, host, endpoint.port)
    assert "no subjectAltName" in findings[0].message and "2017" in findings[0].message
    host = lab_name("reasons2")
    endpoint = BY_LABEL["expired-intermediate"].build(lab, host)
    server, findings = _scan(people.team_a, lab.root_pem, host, endpoint.port)
    assert "KeyChest Lab Sub-CA" in findings[0].message and "expired on" in findings[0].message
    assert ScanResult.objects.get(server=server, current=True).trusted is False


def test_a_server_speaking_only_legacy_tls_lists_every_version(people, lab, lab_name, lab_settings) -> None:
    host = lab_name("tls11only")
    endpoint = lab.tls(lab.leaf([host]), max_version="TLSv1_1")
    server, findings = _scan(people.team_a, lab.root_pem, host, endpoint.port)
    (finding,) = findings
    assert finding.code == "legacy_tls" and finding.severity == "error"
    assert "speaks only TLS 1.0, TLS 1.1" in finding.message
    assert ScanResult.objects.get(server=server, current=True).legacy_tls == ["TLS 1.0", "TLS 1.1"]


def test_a_private_ca_made_the_openssl_way_keeps_working(people, lab, lab_name, lab_settings) -> None:
    # No keyUsage on the root, no authority key identifier on the leaf: the CA/Browser Forum
    # profile refuses that, OpenSSL and browsers accept it under a locally trusted root.
    private = CA("Team Private Root", key_usage=False)
    host = lab_name("private")
    endpoint = lab.tls(private.issue([host], key_identifier=False))
    server, findings = _scan(people.team_a, private.pem, host, endpoint.port)
    assert findings == []
    assert ScanResult.objects.get(server=server, current=True).trusted is True


def test_the_private_ca_profile_still_refuses_real_faults(people, lab, lab_name, lab_settings) -> None:
    private = CA("Team Private Root", key_usage=False)
    not_a_ca = CA("Team Leaf Posing As CA", parent=private, ca_flag=False, key_usage=False)
    host = lab_name("private-bad")
    endpoint = lab.tls(not_a_ca.issue([host], key_identifier=False))
    _, findings = _scan(people.team_a, private.pem, host, endpoint.port)
    assert {f.code for f in findings} == {"issuer_not_ca"}


def test_a_team_may_trust_its_own_self_signed_certificate(people, lab, lab_name, lab_settings) -> None:
    host = lab_name("pinned")
    pinned = self_signed([host])
    endpoint = lab.tls(pinned)
    server, findings = _scan(people.team_a, pinned.cert_pem, host, endpoint.port)
    assert findings == []
    assert ScanResult.objects.get(server=server, current=True).trusted is True


def test_another_teams_ca_is_not_trusted(people, lab, lab_name, lab_settings) -> None:
    private = CA("Team B Private Root").intermediate("Team B Private Intermediate")
    host = lab_name("other-team")
    endpoint = lab.tls(private.issue([host]))
    _, findings = _scan(people.team_b, private.parent.pem, host, endpoint.port)  # type: ignore[union-attr]
    assert findings == []
    _, findings = _scan(people.team_a, lab.root_pem, host, endpoint.port)
    assert {f.code for f in findings} == {"untrusted"}
    assert "Team B Private Root" in findings[0].message
