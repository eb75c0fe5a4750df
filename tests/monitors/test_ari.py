"""ACME Renewal Information: the cert ID, the client against a lab ACME server with every fault,
and the scanner turning the CA's window into renewal findings."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest
from django.urls import reverse
from django.utils import timezone

from certificates.ari import AriClient, ari_cert_id, directories, directory_for, renewal_info_refresh
from certificates.models import Certificate, RenewalInfo
from lab.acme import LabAcme
from lab.pki import now as lab_now
from monitors.models import Finding, ScanResult, Server
from monitors.scanning import scan_servers
from monitors.services import ca_bundle_create, served_certificates_ari_refresh, server_enrol

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(settings) -> Iterator[LabAcme]:  # type: ignore[no-untyped-def]
    with LabAcme() as server:
        settings.KEYCHEST_ARI_DIRECTORIES = [f"keychest lab={server.directory_url}"]
        settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
        settings.KEYCHEST_ARI_TIMEOUT = 1
        yield server


def test_cert_id_is_the_rfc_9773_example() -> None:
    assert ari_cert_id("69885b6b87464041e1b37b847ba0ae2cde01c8d4", "87654321") == "aYhba4dGQEHhs3uEe6CuLN4ByNQ.AIdlQyE"
    assert ari_cert_id("", "01") is None  # no authority key identifier: no ARI
    assert ari_cert_id("zz", "01") is None


def test_directories_default_extend_and_switch_off(settings) -> None:
    settings.KEYCHEST_ARI_DIRECTORIES = []
    assert (
        directory_for("CN=R11,O=Let's Encrypt,C=US", directories()) == "https://acme-v02.api.letsencrypt.org/directory"
    )
    assert directory_for("CN=DigiCert TLS RSA SHA256 2020 CA1,O=DigiCert Inc", directories()) is None
    settings.KEYCHEST_ARI_DIRECTORIES = ["letsencrypt.org=", "example corp=https://acme.corp.example/dir"]
    assert directory_for("CN=R11,O=Let's Encrypt,C=US", directories()) is None
    assert directory_for("CN=Issuing,O=Example Corp", directories()) == "https://acme.corp.example/dir"


def _certificate(serial: str = "0a1b2c", *, key_id: str = "00112233", days: int = 60) -> Certificate:
    now = timezone.now()
    return Certificate.objects.create(
        sha256=f"{serial:0>64}",
        der=b"",
        serial=serial,
        issuer="CN=KeyChest Lab Intermediate,O=KeyChest Lab",
        subject="CN=x",
        issuer_key_id=key_id,
        not_before=now - dt.timedelta(days=30),
        not_after=now + dt.timedelta(days=days),
        lifetime=dt.timedelta(days=30 + days),
        key_type="ec",
        key_size=256,
        signature_algorithm="ecdsa-with-SHA256",
        issuance_key=f"{serial:0>64}",
    )


def test_windows_are_stored_and_polled_by_retry_after(acme) -> None:
    cert = _certificate()
    cert_id = ari_cert_id(cert.issuer_key_id, cert.serial)
    start, end = timezone.now() + dt.timedelta(days=20), timezone.now() + dt.timedelta(days=22)
    acme.set_window(cert_id, start, end, "https://status.lab.example/incident")
    acme.retry_after = 3 * 3600
    now = timezone.now()
    assert renewal_info_refresh(certificate_ids=[cert.pk], now=now) == {"window": 1}
    info = RenewalInfo.objects.get(certificate=cert)
    assert info.window == (start.replace(microsecond=start.microsecond), end)
    assert info.explanation_url == "https://status.lab.example/incident"
    assert dt.timedelta(hours=2.6) < info.next_check_at - now < dt.timedelta(hours=3.4)
    # Not due again: nothing is asked.
    before = sum(acme.requests.values())
    assert renewal_info_refresh(certificate_ids=[cert.pk], now=now + dt.timedelta(hours=1)) == {}
    assert sum(acme.requests.values()) == before


@pytest.mark.parametrize(
    ("fault", "error"),
    [("500", "HTTP 500"), ("429", "HTTP 429"), ("malformed", "malformed"), ("oversized", "too large: ")],
)
def test_faults_keep_the_known_window_and_back_off(acme, fault: str, error: str) -> None:
    cert = _certificate()
    cert_id = ari_cert_id(cert.issuer_key_id, cert.serial)
    start, end = timezone.now() + dt.timedelta(days=20), timezone.now() + dt.timedelta(days=22)
    acme.set_window(cert_id, start, end)
    now = timezone.now()
    renewal_info_refresh(certificate_ids=[cert.pk], now=now)
    acme.faults[cert_id] = fault
    later = now + dt.timedelta(days=3)
    assert renewal_info_refresh(certificate_ids=[cert.pk], now=later) == {"error": 1}
    info = RenewalInfo.objects.get(certificate=cert)
    assert info.last_error.startswith(error)
    assert info.window is not None  # what was known stays
    assert info.next_check_at > later


def test_unknown_certificates_slow_servers_and_broken_directories(acme) -> None:
    unknown = _certificate("0c")
    assert renewal_info_refresh(certificate_ids=[unknown.pk]) == {"not_found": 1}
    assert RenewalInfo.objects.get(certificate=unknown).last_error == "unknown to the CA"

    slow = _certificate("0d")
    acme.faults[ari_cert_id(slow.issuer_key_id, slow.serial)] = "slow"
    acme.slow_seconds = 2.5
    assert renewal_info_refresh(certificate_ids=[slow.pk]) == {"error": 1}
    assert RenewalInfo.objects.get(certificate=slow).last_error.startswith("network: ")

    acme.directory_fault = "no-renewal-info"
    broken = _certificate("0e")
    client = AriClient(allow_private=True, timeout=1)
    assert client.fetch(acme.directory_url, ari_cert_id(broken.issuer_key_id, broken.serial)).error.startswith(
        "malformed: the directory has no renewalInfo"
    )


def test_private_directories_are_refused_unless_allowed(acme, settings) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    cert = _certificate()
    assert renewal_info_refresh(certificate_ids=[cert.pk]) == {"error": 1}
    assert RenewalInfo.objects.get(certificate=cert).last_error.startswith("refused: ")
    assert sum(acme.requests.values()) == 0


def test_the_scanner_follows_the_cas_window(
    people, lab, lab_name, lab_settings, acme, alice_client, charlie_client
) -> None:
    bundle = ca_bundle_create(team=people.team_a, name="lab root", pem=lab.root_pem)
    name = lab_name("ari")
    # 60 of 90 days left: by the lifetime rule nothing is due for 30 days.
    endpoint = lab.tls(
        lab.leaf([name], not_before=lab_now() - dt.timedelta(days=30), not_after=lab_now() + dt.timedelta(days=60))
    )
    server = server_enrol(team=people.team_a, host=f"{name}:{endpoint.port}", ca_bundle=bundle)

    def scan() -> set[str]:
        scan_servers([Server.objects.select_related("ca_bundle").get(pk=server.pk)])
        return set(Finding.objects.filter(server=server, resolved_at=None).values_list("code", flat=True))

    assert scan() == set()
    leaf = Certificate.objects.get(sha256=ScanResult.objects.get(server=server, current=True).leaf_sha256)
    cert_id = ari_cert_id(leaf.issuer_key_id, leaf.serial)
    now = timezone.now()
    # The CA opened the window early (an incident): renew now.
    acme.set_window(cert_id, now - dt.timedelta(hours=1), now + dt.timedelta(days=2))
    assert served_certificates_ari_refresh(now=now) == {"window": 1}
    assert scan() == {"renewal_due"}
    finding = Finding.objects.get(server=server, code="renewal_due", resolved_at=None)
    assert "ARI" in finding.message
    page = alice_client.get(reverse("certificate_detail", args=[leaf.sha256])).content.decode()
    assert 'data-testid="ari-window"' in page
    assert charlie_client.get(reverse("certificate_detail", args=[leaf.sha256])).status_code == 404
    # The window is over: overdue.
    acme.set_window(cert_id, now - dt.timedelta(days=3), now - dt.timedelta(hours=1))
    assert served_certificates_ari_refresh(now=now + dt.timedelta(days=3)) == {"window": 1}
    assert scan() == {"renewal_overdue"}


def test_the_refresh_stops_at_its_time_budget(acme) -> None:
    slow = [_certificate(f"1{i}") for i in range(3)]
    acme.faults["*"] = "slow"
    acme.slow_seconds = 1.5
    assert renewal_info_refresh(certificate_ids=[c.pk for c in slow], budget=0.5) == {"error": 1}
    assert RenewalInfo.objects.count() == 1
