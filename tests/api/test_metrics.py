"""GET /api/v1/metrics: the team's certificates for Prometheus, checked by promtool itself."""

from __future__ import annotations

import subprocess
from datetime import timedelta

import pytest
from django.utils import timezone
from prometheus_client.parser import text_string_to_metric_families
from rest_framework.test import APIClient

from api.models import Scope
from api.services import apikey_create
from certificates.models import Certificate, RenewalInfo
from monitors.models import DomainRegistration, Finding, RegistrationWatch, ScanResult, Server
from tests.api.conftest import key_client, scan_result_for

pytestmark = pytest.mark.django_db
URL = "/api/v1/metrics"


def promtool(*args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(["promtool", *args], input=stdin, capture_output=True, timeout=60, check=False)


def samples(body: bytes) -> dict[str, list[tuple[dict[str, str], float]]]:
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(body.decode()):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def one(found, name: str, **labels: str) -> float:
    [value] = [v for lbl, v in found.get(name, []) if all(lbl.get(k) == want for k, want in labels.items())]
    return value


def watched(team, lab_issuer, host: str, *, address: str = "192.0.2.1", **kwargs) -> tuple[Server, ScanResult]:
    from lab.ctlog.certgen import issue

    server = Server.objects.create(team=team, host=host, port=443, last_scan_at=timezone.now(), **kwargs)
    result = scan_result_for(server, address=address, der=issue(lab_issuer, [host]).certificate)
    return server, result


def failing(server: Server, *, address: str, code: str, ok_until=None) -> None:
    """An address that fails now; with `ok_until`, it answered with a certificate until then."""
    now = timezone.now()
    if ok_until is not None:
        ScanResult.objects.create(
            team=server.team, server=server, address=address, current=False, state_digest="old",
            leaf_sha256="ab" * 32, first_seen=ok_until - timedelta(days=3), last_seen=ok_until,
        )  # fmt: skip
    ScanResult.objects.create(
        team=server.team, server=server, address=address, current=True, state_digest=code, error_code=code,
        error_message="refused", first_seen=now, last_seen=now,
    )  # fmt: skip


def test_it_exports_certificates_addresses_findings_and_registrations_as_promtool_accepts(
    people, alice_read_key, lab_issuer
) -> None:
    now = timezone.now()
    server, result = watched(people.team_a, lab_issuer, "www.example.com")
    cert = Certificate.objects.get(sha256=result.leaf_sha256)
    RenewalInfo.objects.create(
        certificate=cert, window_start=now + timedelta(days=50), window_end=now + timedelta(days=52)
    )
    last_ok = now - timedelta(hours=30)
    failing(server, address="192.0.2.2", code="connect_failed", ok_until=last_ok)
    Finding.objects.create(
        team=people.team_a, server=server, code="hostname_mismatch", severity="error", message="m",
        address="192.0.2.1", first_seen=now, last_seen=now,
    )  # fmt: skip
    Finding.objects.create(
        team=people.team_a, server=server, code="hostname_mismatch", severity="error", message="m",
        address="192.0.2.2", first_seen=now, last_seen=now,
    )  # fmt: skip
    Server.objects.create(team=people.team_a, host="gone.example.com", port=443, dns_error="nxdomain")
    Server.objects.create(team=people.team_a, host="mail.example.com", port=25, protocol="smtp", paused=True)
    registration = DomainRegistration.objects.create(domain="example.com", expires_at=now + timedelta(days=20))
    RegistrationWatch.objects.create(team=people.team_a, registration=registration)

    response = key_client(alice_read_key).get(URL)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    body = response.content
    check = promtool("check", "metrics", stdin=body)
    assert check.returncode == 0, check.stdout + check.stderr
    found = samples(body)
    cert_labels = {
        "instance": "www.example.com:443",
        "address": "192.0.2.1",
        "cn": "www.example.com",
        "issuer_cn": "KeyChest API Test CA",
        "serial_no": cert.serial,
    }
    [(labels, expiry)] = found["keychest_cert_not_after_timestamp_seconds"]
    assert labels == cert_labels
    assert expiry == cert.not_after.timestamp()
    assert one(found, "keychest_cert_not_before_timestamp_seconds") == cert.not_before.timestamp()
    left = one(found, "keychest_cert_expires_in_seconds")
    assert abs(left - (cert.not_after - now).total_seconds()) < 60
    assert one(found, "keychest_cert_ari_window_start_timestamp_seconds") == (now + timedelta(days=50)).timestamp()
    assert one(found, "keychest_cert_ari_window_end_timestamp_seconds") == (now + timedelta(days=52)).timestamp()
    assert one(found, "keychest_probe_success", address="192.0.2.1") == 1
    assert one(found, "keychest_probe_success", address="192.0.2.2") == 0
    assert one(found, "keychest_last_successful_scan_timestamp_seconds", address="192.0.2.2") == last_ok.timestamp()
    assert one(found, "keychest_scan_error", address="192.0.2.2", code="connect_failed") == 1
    assert one(found, "keychest_scan_error", instance="gone.example.com:443", address="", code="nxdomain") == 1
    assert one(found, "keychest_findings_open", code="hostname_mismatch", severity="error") == 2
    assert one(found, "keychest_server_last_scan_timestamp_seconds") == server.last_scan_at.timestamp()
    assert one(found, "keychest_domain_registration_expiry_timestamp_seconds", domain="example.com") == (
        registration.expires_at.timestamp()
    )
    # Paused servers export nothing (they are not scanned, so they would only look stale).
    assert b"mail.example.com" not in body


def test_hostile_certificate_text_cannot_break_the_exposition(people, alice_read_key) -> None:
    now = timezone.now()
    server = Server.objects.create(team=people.team_a, host="evil.example.com", port=443, last_scan_at=now)
    hostile = 'x"} 1\nkeychest_forged{instance="bank:443"} 9\\\r\x1b' + "é" * 300
    ScanResult.objects.create(
        team=people.team_a, server=server, address="192.0.2.9", state_digest="d", leaf_sha256="cd" * 32,
        subject=f"CN={hostile},O=Evil", issuer=f"O=Evil CA,CN={hostile}", not_before=now - timedelta(days=1),
        not_after=now + timedelta(days=1), first_seen=now, last_seen=now,
    )  # fmt: skip
    body = key_client(alice_read_key).get(URL).content

    check = promtool("check", "metrics", stdin=body)
    assert check.returncode == 0, check.stdout + check.stderr
    found = samples(body)
    assert "keychest_forged" not in found
    [(labels, _value)] = found["keychest_cert_not_after_timestamp_seconds"]
    # The text arrives whole as a label value, less its control characters, cut to 128 characters.
    expected = ('x"} 1keychest_forged{instance="bank:443"} 9\\' + "é" * 300)[:128]
    assert labels["cn"] == expected and labels["issuer_cn"] == expected
    assert labels["instance"] == "evil.example.com:443"


def test_another_teams_key_sees_none_of_it(people, alice_read_key, charlie_key, lab_issuer) -> None:
    watched(people.team_a, lab_issuer, "www.alice.example")
    watched(people.team_b, lab_issuer, "www.charlie.example")

    alice = key_client(alice_read_key).get(URL).content
    charlie = key_client(charlie_key).get(URL).content

    assert b"www.alice.example" in alice and b"www.charlie.example" not in alice
    assert b"www.charlie.example" in charlie and b"www.alice.example" not in charlie


def test_scrapers_may_send_the_key_as_a_query_parameter_and_need_the_read_scope(people, alice_read_key) -> None:
    Server.objects.create(team=people.team_a, host="q.example.com", port=443, dns_error="timeout")
    anonymous = APIClient()
    assert anonymous.get(URL).status_code == 401
    assert anonymous.get(URL, {"api_key": "kc_wrong"}).status_code == 401
    by_query = anonymous.get(URL, {"api_key": alice_read_key}, HTTP_ACCEPT="text/plain")
    assert by_query.status_code == 200 and b"q.example.com" in by_query.content
    enrol_only = apikey_create(team=people.team_a, user=people.alice, name="hook", scopes=[Scope.ENROL]).secret
    assert key_client(enrol_only).get(URL).status_code == 403


def test_label_values_are_escaped_as_prometheus_client_reads_them(people, alice_read_key, lab_issuer) -> None:
    now = timezone.now()
    server, _ = watched(people.team_a, lab_issuer, "www.example.com")
    ScanResult.objects.create(
        team=people.team_a, server=server, address="192.0.2.3", state_digest="q", leaf_sha256="ef" * 32,
        subject='CN=quote " back \\ slash', issuer="CN=ü", not_before=now, not_after=now + timedelta(days=3),
        first_seen=now, last_seen=now,
    )  # fmt: skip
    # Prometheus asks for OpenMetrics first; it gets the text format, which it reads as well.
    accept = "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"
    response = key_client(alice_read_key).get(URL, HTTP_ACCEPT=accept)

    assert response["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert b'cn="quote \\" back \\\\ slash"' in response.content
    found = samples(response.content)
    assert (
        one(found, "keychest_cert_not_after_timestamp_seconds", address="192.0.2.3")
        == (now + timedelta(days=3)).timestamp()
    )
    assert {lbl["cn"] for lbl, _ in found["keychest_cert_not_before_timestamp_seconds"]} == {
        'quote " back \\ slash',
        "www.example.com",
    }
    assert {lbl["issuer_cn"] for lbl, _ in found["keychest_cert_not_before_timestamp_seconds"]} == {
        "ü",
        "KeyChest API Test CA",
    }


def test_the_query_count_does_not_grow_with_the_servers(
    people, alice_read_key, lab_issuer, django_assert_max_num_queries
) -> None:
    for i in range(25):
        server, _ = watched(people.team_a, lab_issuer, f"h{i}.example.com")
        failing(server, address="192.0.2.7", code="timeout", ok_until=timezone.now() - timedelta(days=1))
        Finding.objects.create(
            team=people.team_a, server=server, code="expired", severity="critical", message="m",
            first_seen=timezone.now(), last_seen=timezone.now(),
        )  # fmt: skip
    client = key_client(alice_read_key)
    client.get(URL)  # the key is verified and cached once
    # The cached key's epoch check (under a savepoint inside the test's transaction: 3), then
    # servers, results, certificates, last successes, findings, registrations.
    with django_assert_max_num_queries(9):
        response = client.get(URL)
    assert len(samples(response.content)["keychest_probe_success"]) == 50
