from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.serialization import Encoding

from certificates.x509 import CertificateParseError, parse_certificate, pem_to_der_list, strip_ct_extensions
from lab.ctlog.certgen import Issuer, issue


def test_it_reads_every_stored_field(lab_ca: Issuer) -> None:
    start = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    issuance = issue(
        lab_ca,
        ["www.example.com", "*.example.com", "xn--bcher-kva.example"],
        not_before=start,
        lifetime=timedelta(days=90),
        ips=["192.0.2.7"],
        serial=0x1234ABCD,
    )
    cert = parse_certificate(issuance.certificate)
    assert cert.serial == "1234abcd"
    assert cert.issuer == "CN=KeyChest Lab Issuing CA,O=KeyChest Lab,C=XX"
    assert cert.subject == "CN=www.example.com"
    assert (
        cert.issuer_key_id
        == lab_ca.certificate.extensions.get_extension_for_class(cx509.SubjectKeyIdentifier).value.digest.hex()
    )
    assert cert.not_before == start
    assert cert.not_before.tzinfo is not None
    assert cert.lifetime == timedelta(days=90)
    assert (cert.key_type, cert.key_size) == ("ec", 256)
    assert cert.signature_algorithm == "ecdsa-with-SHA256"
    assert not cert.is_ca
    assert not cert.is_precertificate
    assert cert.names == ("www.example.com", "*.example.com", "xn--bcher-kva.example")
    assert cert.ip_addresses == ("192.0.2.7",)
    assert len(cert.sha256) == 64


def test_a_precertificate_and_its_certificate_share_the_issuance_key(lab_ca: Issuer) -> None:
    issuance = issue(lab_ca, ["shop.example.net"])
    pre = parse_certificate(issuance.precertificate)
    final = parse_certificate(issuance.certificate)
    assert pre.is_precertificate and not final.is_precertificate
    assert pre.sha256 != final.sha256
    assert pre.issuance_key == final.issuance_key
    other = parse_certificate(issue(lab_ca, ["shop.example.net"]).certificate)
    assert other.issuance_key != final.issuance_key


def test_the_issuance_key_is_the_hash_of_the_tbs_without_poison(lab_ca: Issuer) -> None:
    issuance = issue(lab_ca, ["a.example.com"])
    pre = cx509.load_der_x509_certificate(issuance.precertificate)
    stripped = strip_ct_extensions(pre.tbs_certificate_bytes)
    assert len(stripped) < len(pre.tbs_certificate_bytes)
    # What is left is still a TBSCertificate cryptography can read back into a certificate.
    assert b"\x2b\x06\x01\x04\x01\xd6\x79\x02\x04\x03" not in stripped


def test_it_accepts_pem_and_pem_bundles(lab_ca: Issuer) -> None:
    cert = cx509.load_der_x509_certificate(issue(lab_ca, ["pem.example.com"]).certificate)
    pem = cert.public_bytes(Encoding.PEM)
    assert parse_certificate(pem.decode()).names == ("pem.example.com",)
    bundle = pem + lab_ca.certificate.public_bytes(Encoding.PEM)
    assert len(pem_to_der_list(bundle)) == 2


def test_it_falls_back_to_the_common_name_without_a_san(lab_ca: Issuer) -> None:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.now(UTC)
    cert = (
        cx509.CertificateBuilder()
        .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "Legacy.Example.com")]))
        .issuer_name(lab_ca.name)
        .public_key(key.public_key())
        .serial_number(7)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .sign(lab_ca.key, hashes.SHA256())
    )
    parsed = parse_certificate(cert.public_bytes(Encoding.DER))
    assert parsed.names == ("legacy.example.com",)
    assert parsed.issuer_key_id == ""


def test_a_ca_certificate_is_flagged(lab_ca: Issuer) -> None:
    assert parse_certificate(lab_ca.der).is_ca


@pytest.mark.parametrize(
    "data",
    [b"", b"\x30\x03\x02\x01", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
)
def test_malformed_input_raises_one_clear_error(data: bytes) -> None:
    with pytest.raises(CertificateParseError):
        parse_certificate(data)


def test_truncated_der_raises_the_same_error(lab_ca: Issuer) -> None:
    der = issue(lab_ca, ["t.example.com"]).certificate
    with pytest.raises(CertificateParseError):
        parse_certificate(der[:-20])
