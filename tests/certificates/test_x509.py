from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509 as cx509
from cryptography.hazmat.primitives.serialization import Encoding

from kcproto.x509 import CertificateParseError, parse_certificate, pem_to_der_list, strip_ct_extensions
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


def _leaf(lab_ca: Issuer, san: list[cx509.GeneralName], *extra: cx509.ExtensionType) -> bytes:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.now(UTC)
    builder = (
        cx509.CertificateBuilder()
        .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "leaf")]))
        .issuer_name(lab_ca.name)
        .public_key(ec.generate_private_key(ec.SECP256R1()).public_key())
        .serial_number(99)
        .not_valid_before(now)
        .not_valid_after(now + timedelta(days=1))
        .add_extension(cx509.SubjectAlternativeName(san), critical=False)
    )
    for ext in extra:
        builder = builder.add_extension(ext, critical=False)
    return builder.sign(lab_ca.key, hashes.SHA256()).public_bytes(Encoding.DER)


def test_extensions_read_from_the_der_equal_what_cryptography_decodes(lab_root: Issuer, lab_ca: Issuer) -> None:
    import ipaddress

    from kcproto import x509 as kx

    issuance = issue(
        lab_ca, ["a.example.com", "*.example.com", "xn--bcher-kva.example"], ips=["192.0.2.1", "2001:db8::1"]
    )
    samples = [issuance.precertificate, issuance.certificate, lab_ca.der, lab_root.der]
    samples.append(_leaf(lab_ca, [cx509.IPAddress(ipaddress.ip_address("198.51.100.9"))]))
    for der in samples:
        cert = cx509.load_der_x509_certificate(der)
        fast = kx._read_extensions(kx._walk_tbs(kx._tbs_of(der)).extensions)
        assert fast is not None
        assert fast == kx._decode_extensions(cert)
    assert kx._read_extensions(kx._walk_tbs(kx._tbs_of(issuance.precertificate)).extensions).is_precertificate  # type: ignore[union-attr]


def test_unusual_san_entries_go_through_cryptography(lab_ca: Issuer) -> None:
    from kcproto import x509 as kx

    der = _leaf(lab_ca, [cx509.UniformResourceIdentifier("https://example.com/"), cx509.DNSName("uri.example.com")])
    assert kx._read_extensions(kx._walk_tbs(kx._tbs_of(der)).extensions) is None
    assert parse_certificate(der).names == ("uri.example.com",)


def test_a_broken_extension_leaves_the_certificate_readable_with_the_error_noted(lab_ca: Issuer) -> None:
    from cryptography.x509.oid import ExtensionOID

    # Certificate policies that are not a SEQUENCE: cryptography loads the certificate but cannot
    # decode that extension. Its dates, names and key are still read (and monitored); the
    # scanner reports the broken extension as malformed_certificate.
    broken = cx509.UnrecognizedExtension(ExtensionOID.CERTIFICATE_POLICIES, b"\x05\x00")
    der = _leaf(lab_ca, [cx509.DNSName("policy.example.com")], broken)
    parsed = parse_certificate(der)
    assert parsed.names == ("policy.example.com",) and parsed.san_dns == ("policy.example.com",)
    assert parsed.extension_error.startswith("ValueError")
    assert parse_certificate(_leaf(lab_ca, [cx509.DNSName("fine.example.com")])).extension_error == ""


def test_a_malformed_san_is_read_as_far_as_it_goes(lab_ca: Issuer) -> None:
    der = _leaf(lab_ca, [cx509.DNSName("ok.example.com")])
    # Turn the SAN's dNSName into a 3-byte "IP address": cryptography cannot decode the SAN.
    marker = b"\x82\x0eok.example.com"
    assert marker in der
    bad = der.replace(marker, b"\x87\x03abc" + b"\x82\x09x.example", 1)
    assert len(bad) == len(der)
    parsed = parse_certificate(bad)
    assert parsed.extension_error
    assert parsed.names == ("x.example",) and parsed.has_san
