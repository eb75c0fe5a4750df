"""The X.509 parser against data nobody here wrote: every certificate in pyca's
cryptography-vectors, field by field against cryptography's own reading."""

from __future__ import annotations

import ipaddress
import os
import warnings
from collections.abc import Iterator
from pathlib import Path

import cryptography_vectors
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtensionOID

from kcproto.x509 import CertificateParseError, parse_certificate, pem_to_der_list, signature_name

VECTORS = Path(os.path.dirname(cryptography_vectors.__file__)) / "x509"


def _files() -> list[Path]:
    return sorted(p for p in VECTORS.rglob("*") if p.suffix in (".pem", ".der", ".crt", ".cer") and p.is_file())


def _certificates() -> Iterator[tuple[str, bytes]]:
    """(name, DER) of every certificate cryptography loads from the vectors."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # negative serials and the like: still certificates
        for path in _files():
            data = path.read_bytes()
            name = str(path.relative_to(VECTORS))
            if b"-----BEGIN" in data:
                try:
                    certs = x509.load_pem_x509_certificates(data)
                except (ValueError, x509.InvalidVersion):
                    continue
                for i, cert in enumerate(certs):
                    yield f"{name}#{i}", cert.public_bytes(Encoding.DER)
            else:
                try:
                    x509.load_der_x509_certificate(data)
                except ValueError:
                    continue
                yield name, data


CERTIFICATES = list(_certificates())


def _expected_key(cert: x509.Certificate) -> tuple[str, int]:
    try:
        key = cert.public_key()
    except Exception:
        return "unknown", 0
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa", key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return "ec", key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return "ed25519", 256
    if isinstance(key, ed448.Ed448PublicKey):
        return "ed448", 456
    if isinstance(key, dsa.DSAPublicKey):
        return "dsa", key.key_size
    return "unknown", 0


def _name_or_unreadable(cert: x509.Certificate, which: str) -> str:
    try:
        return getattr(cert, which).rfc4514_string()[:1000]
    except ValueError:
        return "(unreadable name)"


def test_the_vectors_hold_hundreds_of_certificates() -> None:
    assert len(CERTIFICATES) > 500


def test_every_certificate_cryptography_loads_is_read_field_by_field() -> None:
    mismatches: list[str] = []
    for name, der in CERTIFICATES:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cert = x509.load_der_x509_certificate(der)
            parsed = parse_certificate(der)
        expected: dict[str, object] = {
            "not_before": cert.not_valid_before_utc,
            "not_after": cert.not_valid_after_utc,
            "subject": _name_or_unreadable(cert, "subject"),
            "issuer": _name_or_unreadable(cert, "issuer"),
            "key": _expected_key(cert),
            "signature_algorithm": signature_name(cert.signature_algorithm_oid),
        }
        serial = cert.serial_number
        expected["serial"] = format(serial, "x") if serial >= 0 else "-" + format(-serial, "x")
        got: dict[str, object] = {
            "not_before": parsed.not_before,
            "not_after": parsed.not_after,
            "subject": parsed.subject,
            "issuer": parsed.issuer,
            "key": (parsed.key_type, parsed.key_size),
            "signature_algorithm": parsed.signature_algorithm,
            "serial": parsed.serial,
        }
        try:
            extensions = {e.oid: e.value for e in cert.extensions}
        except Exception:
            assert parsed.extension_error, name
            extensions = None
        if extensions is not None:
            assert parsed.extension_error == "", name
            san = extensions.get(ExtensionOID.SUBJECT_ALTERNATIVE_NAME)
            bc = extensions.get(ExtensionOID.BASIC_CONSTRAINTS)
            aki = extensions.get(ExtensionOID.AUTHORITY_KEY_IDENTIFIER)
            ski = extensions.get(ExtensionOID.SUBJECT_KEY_IDENTIFIER)
            dns = san.get_values_for_type(x509.DNSName) if isinstance(san, x509.SubjectAlternativeName) else []
            ips = san.get_values_for_type(x509.IPAddress) if isinstance(san, x509.SubjectAlternativeName) else []
            expected |= {
                "san_dns": tuple(dns),
                "san_ips": tuple(ipaddress.ip_address(i).compressed for i in ips if not hasattr(i, "netmask")),
                "has_san": san is not None,
                "is_ca": bool(isinstance(bc, x509.BasicConstraints) and bc.ca),
                "aki": aki.key_identifier.hex()
                if isinstance(aki, x509.AuthorityKeyIdentifier) and aki.key_identifier
                else "",
                "ski": ski.digest.hex() if isinstance(ski, x509.SubjectKeyIdentifier) else "",
                "precertificate": ExtensionOID.PRECERT_POISON in extensions,
            }
            got |= {
                "san_dns": parsed.san_dns,
                "san_ips": parsed.san_ips,
                "has_san": parsed.has_san,
                "is_ca": parsed.is_ca,
                "aki": parsed.issuer_key_id,
                "ski": parsed.subject_key_id,
                "precertificate": parsed.is_precertificate,
            }
        for field, value in expected.items():
            if got[field] != value:
                mismatches.append(f"{name}: {field} {got[field]!r} != {value!r}")
    assert mismatches == []


def test_every_other_input_file_is_refused_with_the_one_documented_error() -> None:
    loaded = {name.split("#")[0] for name, _ in CERTIFICATES}
    refused = 0
    for path in _files():
        name = str(path.relative_to(VECTORS))
        if name in loaded:
            continue
        data = path.read_bytes()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with pytest.raises(CertificateParseError):
                if b"-----BEGIN" in data:
                    pem_to_der_list(data)
                    raise AssertionError(f"{name} was not refused")
                parse_certificate(data)
        refused += 1
    assert refused > 40


@pytest.mark.parametrize(
    ("name", "check"),
    [
        # Key types cryptography cannot use: stored as such, not refused.
        ("e-trust.ru.der", lambda p: (p.key_type, p.key_size) == ("unknown", 0)),
        ("custom/unsupported_subject_public_key_info.pem", lambda p: p.key_type == "unknown"),
        # A subject with invalid UTF-8: shown as unreadable.
        ("custom/invalid_utf8_common_name.pem", lambda p: p.subject == "(unreadable name)"),
        # Old signature algorithms by name, not as dotted OIDs.
        ("verisign_md2_root.pem", lambda p: p.signature_algorithm == "md2WithRSAEncryption"),
        ("v1_cert.pem", lambda p: p.signature_algorithm == "md5WithRSAEncryption"),
        ("custom/alternate-rsa-sha1-oid.der", lambda p: p.signature_algorithm == "sha1WithRSASignature"),
        # No SAN: a CN fallback only for host names of two labels or more.
        ("department-of-state-root.pem", lambda p: p.names == () and p.ip_addresses == ()),
        ("custom/two_basic_constraints.pem", lambda p: "Duplicate" in p.extension_error),
    ],
)
def test_odd_certificates_are_accepted_and_read_sensibly(name: str, check) -> None:  # type: ignore[no-untyped-def]
    data = (VECTORS / name).read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        parsed = parse_certificate(data)
    assert check(parsed)


def test_a_pem_certificate_with_an_invalid_version_is_a_parse_error() -> None:
    with pytest.raises(CertificateParseError, match="not a valid X509 version"):
        pem_to_der_list((VECTORS / "custom" / "invalid_version.pem").read_bytes())
