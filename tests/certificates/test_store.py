"""The bulk store (`certificates_store_bulk`): binary COPY on PostgreSQL, the ORM elsewhere, one meaning."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from django.db import connection, transaction

from certificates import pgstore
from certificates.models import Certificate, CertificateName, CertificateSource, SourceKind
from certificates.services import StoreItem, certificate_store_der, certificates_for, certificates_store_bulk
from kcproto.x509 import parse_certificate
from lab.ctlog.certgen import Issuer, issue


def _item(der: bytes, ref: str, source: str = SourceKind.CT) -> StoreItem:
    return StoreItem(parse_certificate(der), source, ref)


@pytest.mark.django_db
def test_postgresql_stores_through_copy(db: None) -> None:
    # CI runs on PostgreSQL: make sure that is the path it exercises, not the ORM fallback.
    assert pgstore.copy_supported() == (connection.vendor == "postgresql")


@pytest.mark.django_db
def test_every_field_reads_back_as_parsed(lab_ca: Issuer) -> None:
    key = ec.generate_private_key(ec.SECP384R1())
    now = datetime(2026, 5, 1, 12, 30, 15, tzinfo=UTC)
    der = (
        cx509.CertificateBuilder()
        .subject_name(
            cx509.Name(
                [
                    cx509.NameAttribute(NameOID.COMMON_NAME, "bücher.example"),
                    cx509.NameAttribute(NameOID.ORGANIZATION_NAME, 'Tab\there, "quoted" \\ back'),
                ]
            )
        )
        .issuer_name(lab_ca.name)
        .public_key(key.public_key())
        .serial_number(0x0123456789ABCDEF)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=47, seconds=7))
        .add_extension(
            cx509.SubjectAlternativeName([cx509.DNSName("xn--bcher-kva.example"), cx509.DNSName("*.example.org")]),
            critical=False,
        )
        .sign(lab_ca.key, hashes.SHA256())
        .public_bytes(Encoding.DER)
    )
    parsed = parse_certificate(der)
    result = certificates_store_bulk(items=[StoreItem(parsed, SourceKind.UPLOAD, "api")])
    row = Certificate.objects.get(pk=result.ids[parsed.sha256])
    assert bytes(row.der) == der
    assert (row.sha256, row.serial, row.issuer, row.subject) == (
        parsed.sha256,
        "123456789abcdef",
        parsed.issuer,
        parsed.subject,
    )
    assert (row.not_before, row.not_after, row.lifetime) == (now, now + timedelta(days=47, seconds=7), parsed.lifetime)
    assert (row.key_type, row.key_size, row.signature_algorithm) == ("ec", 384, parsed.signature_algorithm)
    assert (row.is_ca, row.is_precertificate, row.thinned) == (False, False, False)
    assert (row.issuance_key, row.issuer_key_id, row.subject_key_id) == (parsed.issuance_key, "", "")
    assert row.first_seen_at is not None
    names = {n.name: n for n in CertificateName.objects.filter(certificate=row)}
    assert set(names) == {"xn--bcher-kva.example", "*.example.org"}
    assert names["*.example.org"].is_wildcard and names["*.example.org"].reversed_name == "org.example.*"
    assert names["xn--bcher-kva.example"].registered_domain == "xn--bcher-kva.example"
    assert names["*.example.org"].not_after == row.not_after
    assert list(CertificateSource.objects.filter(certificate=row).values_list("kind", "ref")) == [("upload", "api")]


@pytest.mark.django_db
def test_duplicates_within_a_batch_are_one_certificate_with_every_source(lab_ca: Issuer) -> None:
    der = issue(lab_ca, ["dup.example.com", "www.dup.example.com"]).certificate
    result = certificates_store_bulk(
        items=[_item(der, "log-a:1"), _item(der, "log-b:7"), _item(der, "log-a:1"), _item(der, "scan", SourceKind.SCAN)]
    )
    assert len(result.new) == 1
    assert Certificate.objects.count() == 1
    assert CertificateName.objects.count() == 2
    assert set(CertificateSource.objects.values_list("kind", "ref")) == {
        ("ct", "log-a:1"),
        ("ct", "log-b:7"),
        ("scan", "scan"),
    }


@pytest.mark.django_db
def test_a_name_in_a_dns_and_an_ip_san_is_one_row(lab_ca: Issuer) -> None:
    # A dNSName "192.0.2.7" normalises to the IP literal an iPAddress SAN also gives.
    der = issue(lab_ca, ["host.example.com", "192.0.2.7"], ips=["192.0.2.7"]).certificate
    certificates_store_bulk(items=[_item(der, "log:0")])
    assert sorted(CertificateName.objects.values_list("name", flat=True)) == ["192.0.2.7", "host.example.com"]


@pytest.mark.django_db
def test_precertificate_and_certificate_in_one_batch_are_one_issuance(lab_ca: Issuer) -> None:
    issuance = issue(lab_ca, ["one.example.net"])
    result = certificates_store_bulk(
        items=[_item(issuance.precertificate, "log:0"), _item(issuance.certificate, "log:1")]
    )
    assert len(result.new) == 2
    assert len({p.issuance_key for p in result.new}) == 1
    shown = list(certificates_for("one.example.net"))
    assert [c.is_precertificate for c in shown] == [False]


@pytest.mark.django_db
def test_precertificate_and_certificate_across_batches_are_one_issuance(lab_ca: Issuer) -> None:
    issuance = issue(lab_ca, ["two.example.net"])
    first = certificates_store_bulk(items=[_item(issuance.precertificate, "log:0")])
    assert [c.is_precertificate for c in certificates_for("two.example.net")] == [True]
    second = certificates_store_bulk(items=[_item(issuance.certificate, "log:9")])
    assert first.new[0].issuance_key == second.new[0].issuance_key
    assert [c.is_precertificate for c in certificates_for("two.example.net")] == [False]
    assert Certificate.objects.count() == 2


@pytest.mark.django_db
def test_certificates_stored_by_a_scan_or_an_upload_are_not_new_and_gain_the_ct_source(lab_ca: Issuer) -> None:
    scanned = issue(lab_ca, ["scanned.example.com"]).certificate
    uploaded = issue(lab_ca, ["uploaded.example.com"]).certificate
    fresh = issue(lab_ca, ["fresh.example.com"]).certificate
    scan_row = certificate_store_der(der=scanned, source=SourceKind.SCAN, source_ref="scanned.example.com:443")
    upload_row = certificate_store_der(der=uploaded, source=SourceKind.UPLOAD, source_ref="api")
    result = certificates_store_bulk(items=[_item(scanned, "log:1"), _item(fresh, "log:2"), _item(uploaded, "log:3")])
    assert [p.names for p in result.new] == [("fresh.example.com",)]
    assert result.ids[scan_row.sha256] == scan_row.pk
    assert result.ids[upload_row.sha256] == upload_row.pk
    assert Certificate.objects.count() == 3
    assert CertificateName.objects.filter(certificate=scan_row).count() == 1
    assert set(CertificateSource.objects.filter(certificate=scan_row).values_list("kind", "ref")) == {
        ("scan", "scanned.example.com:443"),
        ("ct", "log:1"),
    }
    # Storing the same batch again changes nothing.
    again = certificates_store_bulk(items=[_item(scanned, "log:1"), _item(fresh, "log:2"), _item(uploaded, "log:3")])
    assert again.new == []
    assert (CertificateName.objects.count(), CertificateSource.objects.count()) == (3, 5)


@pytest.mark.django_db
def test_a_failed_batch_leaves_nothing_behind(lab_ca: Issuer) -> None:
    der = issue(lab_ca, ["rolled.example.com"]).certificate
    with pytest.raises(RuntimeError), transaction.atomic():
        certificates_store_bulk(items=[_item(der, "log:0")])
        raise RuntimeError("crash before the commit")
    assert (Certificate.objects.count(), CertificateName.objects.count(), CertificateSource.objects.count()) == (
        0,
        0,
        0,
    )


@pytest.mark.skipif(connection.vendor != "postgresql", reason="two concurrent writers need a database server")
@pytest.mark.django_db(transaction=True)
def test_a_certificate_another_writer_stores_meanwhile_is_theirs(lab_ca: Issuer, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The other writer's uncommitted row makes our COPY wait, then fail; the ON CONFLICT path takes over."""
    fallbacks: list[int] = []
    real_insert = pgstore._insert_certificates

    def counting_insert(cursor, parsed, logged):  # type: ignore[no-untyped-def]
        fallbacks.append(len(parsed))
        return real_insert(cursor, parsed, logged)

    monkeypatch.setattr(pgstore, "_insert_certificates", counting_insert)
    theirs = issue(lab_ca, ["race.example.com"]).certificate
    ours = issue(lab_ca, ["ours.example.com"]).certificate
    inserted, done = threading.Event(), threading.Event()
    their_ids: dict[str, int] = {}

    def other_writer() -> None:
        try:
            with transaction.atomic():
                their_ids.update(certificates_store_bulk(items=[_item(theirs, "other-log:5")]).ids)
                inserted.set()
                done.wait(0.5)  # still uncommitted while the main thread stores
        finally:
            connection.close()

    thread = threading.Thread(target=other_writer)
    thread.start()
    assert inserted.wait(10)
    result = certificates_store_bulk(items=[_item(theirs, "log:1"), _item(ours, "log:2")])
    thread.join()
    sha_theirs = parse_certificate(theirs).sha256
    assert [p.names for p in result.new] == [("ours.example.com",)]
    assert fallbacks == [2]  # the COPY failed on their row; the conflict-tolerant INSERT stored ours
    assert result.ids[sha_theirs] == their_ids[sha_theirs]
    assert Certificate.objects.count() == 2
    assert CertificateName.objects.filter(certificate_id=their_ids[sha_theirs]).count() == 1
    assert set(
        CertificateSource.objects.filter(certificate_id=their_ids[sha_theirs]).values_list("ref", flat=True)
    ) == {
        "other-log:5",
        "log:1",
    }


@pytest.mark.django_db
def test_new_certificates_are_reported_in_the_order_of_the_batch(lab_ca: Issuer) -> None:
    # Ingestion describes an issuance by its first entry in the log: the order must survive the
    # fingerprint-ordered COPY.
    ders = [issue(lab_ca, [f"order{i}.example.com"]).certificate for i in range(12)]
    result = certificates_store_bulk(items=[_item(d, f"log:{i}") for i, d in enumerate(ders)])
    assert [p.der for p in result.new] == ders


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["copy", "orm"])
def test_only_certificates_read_from_a_log_are_ct_logged(lab_ca: Issuer, monkeypatch, path: str) -> None:
    if path == "orm":
        monkeypatch.setattr(pgstore, "copy_supported", lambda: False)
    scanned = issue(lab_ca, ["appliance.example.com"]).certificate
    uploaded = issue(lab_ca, ["intranet.example.com"]).certificate
    later = issue(lab_ca, ["later.example.com"]).certificate
    logged = issue(lab_ca, ["www.example.com"])
    certificate_store_der(der=scanned, source=SourceKind.SCAN, source_ref="appliance.example.com:443")
    certificate_store_der(der=uploaded, source=SourceKind.UPLOAD, source_ref="team:x")
    certificate_store_der(der=later, source=SourceKind.SCAN, source_ref="later.example.com:443")
    certificates_store_bulk(items=[_item(logged.precertificate, "log:1"), _item(logged.certificate, "log:2")])
    flags = dict(Certificate.objects.values_list("subject", "ct_logged"))
    assert flags == {
        "CN=appliance.example.com": False,
        "CN=intranet.example.com": False,
        "CN=later.example.com": False,
        "CN=www.example.com": True,  # precertificate and certificate share the subject
    }
    assert Certificate.objects.filter(ct_logged=True).count() == 2
    # A scanned certificate that a log serves later becomes public, in a mixed batch too; a scan of a
    # logged certificate does not make it private again.
    certificates_store_bulk(
        items=[_item(later, "log:3"), StoreItem(parse_certificate(logged.certificate), SourceKind.SCAN, "www:443")]
    )
    assert set(Certificate.objects.filter(ct_logged=True).values_list("subject", flat=True)) == {
        "CN=www.example.com",
        "CN=later.example.com",
    }
