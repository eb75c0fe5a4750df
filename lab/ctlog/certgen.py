"""Generate realistic certificates and precertificates for the local CT log, tests and benchmarks.

A precertificate and its final certificate are built from the same fields with the same
extensions in the same order, the poison in the precertificate standing where the SCT list
stands in the certificate — as real CAs do — so their TBSCertificates differ only there.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

SCT_LIST_OID = x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.4.2")

_WORDS = [
    "www",
    "mail",
    "api",
    "app",
    "shop",
    "blog",
    "cdn",
    "static",
    "img",
    "auth",
    "login",
    "portal",
    "vpn",
    "git",
    "ci",
    "dev",
    "stage",
    "test",
    "beta",
    "admin",
    "files",
    "docs",
    "status",
    "m",
    "mx",
    "smtp",
    "imap",
    "ftp",
    "cloud",
    "data",
    "db",
    "backup",
    "news",
]
_IDN_LABELS = ("bücher", "münchen", "café", "пример", "例え", "straße", "ελληνικά", "δοκιμή")
_TLDS = ("com", "org", "net", "io", "de", "co.uk", "fr", "nl", "dev", "app")


@dataclass
class Issuer:
    """A CA that signs leaves (an intermediate under a root, or a root itself)."""

    name: x509.Name
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate

    @property
    def der(self) -> bytes:
        return self.certificate.public_bytes(Encoding.DER)


def _ski(key: ec.EllipticCurvePublicKey) -> x509.SubjectKeyIdentifier:
    return x509.SubjectKeyIdentifier.from_public_key(key)


def make_ca(common_name: str, *, parent: Issuer | None = None, now: datetime | None = None) -> Issuer:
    """A root (no parent) or an intermediate CA with an EC P-256 key."""
    now = now or datetime.now(UTC)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "XX"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "KeyChest Lab"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    signer_key = parent.key if parent else key
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(parent.name if parent else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=365))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None if parent is None else 0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(_ski(key.public_key()), critical=False)
    )
    if parent is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()), critical=False
        )
    cert = builder.sign(signer_key, hashes.SHA256())
    return Issuer(name=name, key=key, certificate=cert)


@dataclass
class Issuance:
    """One issuance: the precertificate, the final certificate, and the names on them."""

    names: list[str]
    precertificate: bytes
    certificate: bytes
    issuer: Issuer
    not_before: datetime
    serial: int
    extras: dict[str, object] = field(default_factory=dict)


def _leaf_builder(
    issuer: Issuer,
    names: list[str],
    *,
    public_key: ec.EllipticCurvePublicKey,
    serial: int,
    not_before: datetime,
    lifetime: timedelta,
    ips: list[str] | None = None,
) -> x509.CertificateBuilder:
    import ipaddress

    alt: list[x509.GeneralName] = [x509.DNSName(n) for n in names]
    alt += [x509.IPAddress(ipaddress.ip_address(a)) for a in ips or []]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]) if names else x509.Name([])
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer.name)
        .public_key(public_key)
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_before + lifetime)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer.key.public_key()), critical=False)
        .add_extension(x509.SubjectAlternativeName(alt), critical=False)
    )


def _fake_sct_list(serial: int) -> bytes:
    """A syntactically valid SignedCertificateTimestampList (RFC 6962 §3.3) with one v1 SCT."""
    log_id = serial.to_bytes(32, "big", signed=False)[-32:]
    sct = b"\x00" + log_id + (1_700_000_000_000).to_bytes(8, "big") + b"\x00\x00" + b"\x04\x03" + b"\x00\x04abcd"
    body = len(sct).to_bytes(2, "big") + sct
    tls_list = len(body).to_bytes(2, "big") + body
    # The extension value is an OCTET STRING holding the TLS-encoded list.
    return b"\x04" + bytes([len(tls_list)]) + tls_list


def issue(
    issuer: Issuer,
    names: list[str],
    *,
    not_before: datetime | None = None,
    lifetime: timedelta = timedelta(days=90),
    public_key: ec.EllipticCurvePublicKey | None = None,
    serial: int | None = None,
    ips: list[str] | None = None,
) -> Issuance:
    """A precertificate and its final certificate for `names` (as a CA logging to CT does)."""
    not_before = (not_before or datetime.now(UTC) - timedelta(hours=1)).replace(microsecond=0)
    public_key = public_key or ec.generate_private_key(ec.SECP256R1()).public_key()
    serial = serial or x509.random_serial_number()
    base = _leaf_builder(
        issuer, names, public_key=public_key, serial=serial, not_before=not_before, lifetime=lifetime, ips=ips
    )
    pre = base.add_extension(x509.PrecertPoison(), critical=True).sign(issuer.key, hashes.SHA256())
    final = base.add_extension(x509.UnrecognizedExtension(SCT_LIST_OID, _fake_sct_list(serial)), critical=False).sign(
        issuer.key, hashes.SHA256()
    )
    return Issuance(
        names=names,
        precertificate=pre.public_bytes(Encoding.DER),
        certificate=final.public_bytes(Encoding.DER),
        issuer=issuer,
        not_before=not_before,
        serial=serial,
    )


def random_names(rng: random.Random, *, domain: str | None = None, count: int | None = None) -> list[str]:
    """A realistic name set: a registered domain, some sub-domains, maybe a wildcard or an IDN."""
    if domain is None:
        base = f"{rng.choice(_WORDS)}{rng.randrange(10_000_000)}"
        if rng.random() < 0.03:
            base = f"{rng.choice(_IDN_LABELS)}{rng.randrange(1000)}"
        domain = f"{base}.{rng.choice(_TLDS)}"
    count = count or rng.choice((1, 1, 2, 2, 2, 3, 4, 6, 10))
    names = [domain]
    while len(names) < count:
        roll = rng.random()
        if roll < 0.15 and f"*.{domain}" not in names:
            names.append(f"*.{domain}")
        else:
            candidate = f"{rng.choice(_WORDS)}.{domain}"
            if candidate not in names:
                names.append(candidate)
            elif len(names) >= len(_WORDS):
                break
    return [_to_alabel(n) for n in names]


def _to_alabel(name: str) -> str:
    import idna

    _, sep, rest = name.partition("*.")
    target = rest if sep else name
    if target.isascii():
        return name
    return ("*." if sep else "") + idna.encode(target, uts46=True).decode("ascii")
