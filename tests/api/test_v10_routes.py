"""/api/v1.0 servers/add, certificate/add and servers/expiration, with the exact shapes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine

from api.models import UploadedCertificate
from lab.ctlog.certgen import issue
from monitors.models import ScanResult, Server, TeamScanPolicy
from tests.api.conftest import key_client, pem_of, scan_result_for

pytestmark = pytest.mark.django_db


def test_adding_a_server_watches_it_for_the_keys_team(people, alice_key) -> None:
    response = key_client(alice_key).post("/api/v1.0/servers/add", {"domain": "WWW.Example.com:8443"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["status"] == "success" and body["domain"] == "www.example.com" and body["port"] == 8443
    server = Server.objects.get(uuid=body["id"])
    assert server.team == people.team_a and server.added_by == people.alice and server.next_scan_at is not None


def test_adding_it_again_is_already_inserted(people, alice_key) -> None:
    client = key_client(alice_key)
    client.post("/api/v1.0/servers/add", {"domain": "example.com"}, format="json")
    again = client.post("/api/v1.0/servers/add", {"domain": "example.com:443"}, format="json")
    assert again.json()["status"] == "already-inserted"
    assert Server.objects.count() == 1


@pytest.mark.parametrize("domain", ["", "bad host!", "*.example.com", "example.com:99999", "user@example.com"])
def test_a_bad_domain_is_invalid_domain(people, alice_key, domain) -> None:
    response = key_client(alice_key).post("/api/v1.0/servers/add", {"domain": domain}, format="json")
    assert response.status_code == 400
    assert response.json()["status"] == "invalid-domain"


def test_the_key_in_the_body_works_for_enrolment(people, alice_key) -> None:
    from rest_framework.test import APIClient

    response = APIClient().post(
        "/api/v1.0/servers/add", {"domain": "a.example.com", "api_key": alice_key}, format="json"
    )
    assert response.json()["status"] == "success"


def test_a_read_only_key_cannot_enrol(people, alice_read_key) -> None:
    response = key_client(alice_read_key).post("/api/v1.0/servers/add", {"domain": "example.com"}, format="json")
    assert response.status_code == 403 and response.json()["status"] == "not-allowed"


def test_uploading_one_certificate(people, alice_key, lab_issuer) -> None:
    der = issue(lab_issuer, ["www.example.com"]).certificate
    client = key_client(alice_key)
    first = client.post("/api/v1.0/certificate/add", {"certificate": pem_of(der)}, format="json").json()
    assert first["status"] == "success" and len(first["certificate_sha256"]) == 64
    assert (
        client.post("/api/v1.0/certificate/add", {"certificate": pem_of(der)}, format="json").json()["status"]
        == "already-inserted"
    )
    assert UploadedCertificate.objects.for_team(people.team_a).count() == 1


def test_two_certificates_are_single_cert_expected(people, alice_key, lab_issuer) -> None:
    chain = pem_of(issue(lab_issuer, ["a.example.com"]).certificate) + pem_of(lab_issuer.der)
    response = key_client(alice_key).post("/api/v1.0/certificate/add", {"certificate": chain}, format="json")
    assert response.status_code == 400 and response.json()["status"] == "single-cert-expected"


def test_garbage_is_not_a_certificate(people, alice_key) -> None:
    response = key_client(alice_key).post(
        "/api/v1.0/certificate/add",
        {"certificate": "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"},
        format="json",
    )
    assert response.status_code == 400 and response.json()["status"] == "invalid-certificate"


def test_expiration_reports_every_ip_with_the_exact_fields(people, alice_key, lab_issuer) -> None:
    start = datetime(2026, 1, 1, tzinfo=UTC)
    server = Server.objects.create(team=people.team_a, host="www.example.com", port=443)
    fresh = issue(lab_issuer, ["www.example.com"], not_before=start, lifetime=timedelta(days=90)).certificate
    old = issue(
        lab_issuer, ["www.example.com"], not_before=start - timedelta(days=80), lifetime=timedelta(days=90)
    ).certificate
    scan_result_for(server, address="192.0.2.1", der=fresh, last_seen=start + timedelta(days=1))
    scan_result_for(server, address="192.0.2.2", der=old, last_seen=start + timedelta(days=1))
    with time_machine.travel(start + timedelta(days=2), tick=False):
        body = key_client(alice_key).get("/api/v1.0/servers/expiration/www.example.com").json()
    assert body["status"] == "success"
    assert body["certificate_found"] is True and body["renewal_due"] is True and body["expired_found"] is False
    by_ip = {e["ip"]: e for e in body["results"]}
    assert set(by_ip) == {"192.0.2.1", "192.0.2.2"}
    assert set(by_ip["192.0.2.1"]) >= {
        "ip",
        "certificate_sha256",
        "renewal_due",
        "expired",
        "renewal_utc",
        "last_scan_utc",
    }
    assert by_ip["192.0.2.1"]["renewal_due"] is False and by_ip["192.0.2.2"]["renewal_due"] is True
    assert by_ip["192.0.2.1"]["renewal_utc"] == int((start + timedelta(days=60)).timestamp())
    assert by_ip["192.0.2.1"]["last_scan_utc"] == int((start + timedelta(days=1)).timestamp())
    with time_machine.travel(start + timedelta(days=12), tick=False):
        body = key_client(alice_key).get("/api/v1.0/servers/expiration/www.example.com").json()
    assert body["expired_found"] is True


def test_expiration_applies_the_servers_then_the_teams_thresholds(people, alice_key, lab_issuer) -> None:
    """A server's own fraction wins over the team's; an address that failed has no dates."""
    start = datetime(2026, 1, 1, tzinfo=UTC)
    der = issue(lab_issuer, ["www.example.com"], not_before=start, lifetime=timedelta(days=100)).certificate
    server = Server.objects.create(team=people.team_a, host="www.example.com", port=443)
    scan_result_for(server, address="192.0.2.1", der=der, last_seen=start)
    failed = scan_result_for(server, address="192.0.2.2", der=der, last_seen=start)
    ScanResult.objects.filter(pk=failed.pk).update(leaf_sha256="", error_code="connection_refused")
    TeamScanPolicy.objects.create(team=people.team_a, due_fraction=0.5)

    def at_day(day: int, path: str = "/api/v1.0/servers/expiration/www.example.com") -> dict:
        with time_machine.travel(start + timedelta(days=day), tick=False):
            return key_client(alice_key).get(path).json()

    body = at_day(55)  # 45 of 100 days left: due under the team's half, not under the default third
    good, bad = body["results"]
    assert good["renewal_due"] is True and good["renewal_utc"] == int((start + timedelta(days=50)).timestamp())
    assert bad == {
        "ip": "192.0.2.2",
        "port": 443,
        "certificate_sha256": None,
        "renewal_due": False,
        "expired": False,
        "renewal_utc": None,
        "expires_utc": None,
        "last_scan_utc": int(start.timestamp()),
        "error": "connection_refused",
    }
    Server.objects.filter(pk=server.pk).update(due_fraction=0.25)
    good = at_day(55)["results"][0]
    assert good["renewal_due"] is False and good["renewal_utc"] == int((start + timedelta(days=75)).timestamp())
    assert at_day(80)["renewal_due"] is True
    assert at_day(80, "/api/v1/expiry?host=www.example.com")["results"][0] == at_day(80)["results"][0]


def test_expiration_is_only_the_callers_teams_data(people, alice_key, charlie_key, lab_issuer) -> None:
    server = Server.objects.create(team=people.team_a, host="www.example.com", port=443)
    scan_result_for(server, address="192.0.2.1", der=issue(lab_issuer, ["www.example.com"]).certificate)
    response = key_client(charlie_key).get("/api/v1.0/servers/expiration/www.example.com")
    assert response.status_code == 404 and response.json()["status"] == "not-found"
    assert key_client(alice_key).get("/api/v1.0/servers/expiration/www.example.com").status_code == 200


def test_a_watched_but_unscanned_server_has_no_certificate_yet(people, alice_key) -> None:
    key_client(alice_key).post("/api/v1.0/servers/add", {"domain": "new.example.com"}, format="json")
    body = key_client(alice_key).get("/api/v1.0/servers/expiration/new.example.com").json()
    assert body["certificate_found"] is False and body["results"] == []


@pytest.mark.django_db(transaction=True)  # autocommit, as in a request: no savepoints around statements
def test_expiration_queries_stay_constant(people, alice_key, lab_issuer, django_assert_max_num_queries) -> None:
    server = Server.objects.create(team=people.team_a, host="www.example.com", port=443)
    for i in range(8):
        scan_result_for(server, address=f"192.0.2.{i + 1}", der=issue(lab_issuer, ["www.example.com"]).certificate)
    client = key_client(alice_key)
    client.get("/api/v1.0/servers/expiration/www.example.com")  # last_used write happens once a minute
    # Two statements: on PostgreSQL the cached key's epoch check and the answer; elsewhere keys
    # are not cached, so the key's look-up and the answer.
    with django_assert_max_num_queries(2):
        assert client.get("/api/v1.0/servers/expiration/www.example.com").status_code == 200
