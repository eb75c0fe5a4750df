"""A private PKI for the lab: roots, intermediates and leaves with any flaw a scenario needs.

ECDSA P-256 by default (fast to generate); RSA where a scenario needs it (weak 1024-bit keys,
SHA-1 signatures, which cryptography no longer produces, are made by re-signing the DER).
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey

_SHA256_RSA_OID = bytes.fromhex("06092a864886f70d01010b")
_SHA1_RSA_OID = bytes.fromhex("06092a864886f70d010105")


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def make_key(kind: str = "ec", size: int = 2048) -> PrivateKey:
    if kind == "rsa":
        return rsa.generate_private_key(public_exponent=65537, key_size=size)
    return ec.generate_private_key(ec.SECP256R1())


def _name(common_name: str, org: str = "KeyChest Lab") -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, common_name)]
    )


def _resign_sha1(cert: x509.Certificate, issuer_key: PrivateKey) -> x509.Certificate:
    """The same certificate signed with SHA-1 (the OIDs have equal length, so DER surgery works)."""
    if not isinstance(issuer_key, rsa.RSAPrivateKey):
        raise ValueError("SHA-1 re-signing needs an RSA issuer")
    der = cert.public_bytes(serialization.Encoding.DER)
    tbs = cert.tbs_certificate_bytes.replace(_SHA256_RSA_OID, _SHA1_RSA_OID)
    signature = issuer_key.sign(tbs, padding.PKCS1v15(), hashes.SHA1())
    old_signature = cert.signature
    assert len(signature) == len(old_signature)
    new_der = der.replace(_SHA256_RSA_OID, _SHA1_RSA_OID)
    new_der = new_der[: -len(old_signature)] + signature
    return x509.load_der_x509_certificate(new_der)


@dataclass
class Issued:
    """A certificate, its key and the chain above it (issuer first, root last)."""

    cert: x509.Certificate
    key: PrivateKey
    parents: list[x509.Certificate] = field(default_factory=list)

    @property
    def der(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.DER)

    @property
    def cert_pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def key_pem(self) -> str:
        return self.key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()

    def chain_pem(self, *, include_root: bool = False, include_intermediates: bool = True) -> str:
        """Leaf first, then intermediates (and the root if asked): what a server presents."""
        parts = [self.cert_pem]
        if include_intermediates:
            uppers = self.parents if include_root else [p for p in self.parents if p.issuer != p.subject]
            parts += [p.public_bytes(serialization.Encoding.PEM).decode() for p in uppers]
        return "".join(parts)

    def write(self, folder: Path, stem: str, **chain_options: bool) -> tuple[str, str]:
        """Write `<stem>.crt` (chain) and `<stem>.key`; returns their paths for load_cert_chain."""
        cert_path = folder / f"{stem}.crt"
        key_path = folder / f"{stem}.key"
        cert_path.write_text(self.chain_pem(**chain_options))
        key_path.write_text(self.key_pem)
        os.chmod(key_path, 0o600)
        return str(cert_path), str(key_path)


class CA:
    """A certificate authority of the lab (a root, or an intermediate under another CA)."""

    def __init__(
        self,
        name: str = "KeyChest Lab Root",
        *,
        parent: CA | None = None,
        key_kind: str = "ec",
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        ca_flag: bool = True,
        key_cert_sign: bool = True,
        path_length: int | None = None,
        permitted_names: list[str] | None = None,
        key_usage: bool = True,
    ) -> None:
        """A CA; the flaws a chain-validation scenario needs are switches: `ca_flag=False` (an
        issuer without basicConstraints cA), `key_cert_sign=False` (keyUsage without
        keyCertSign), `path_length`, `permitted_names` (a dNSName name constraint), and
        `key_usage=False` (no keyUsage at all, as `openssl req -x509` makes private CAs)."""
        self.key: PrivateKey = make_key(key_kind)
        self.parent = parent
        self.cert: x509.Certificate
        subject = _name(name)
        start = not_before or now() - dt.timedelta(days=365)
        end = not_after or now() + dt.timedelta(days=3650)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(parent.cert.subject if parent else subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(
                x509.BasicConstraints(ca=ca_flag, path_length=path_length if ca_flag else None), critical=True
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
        )
        if key_usage:
            builder = builder.add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=key_cert_sign,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
        if parent is not None:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(parent.key.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        if permitted_names:
            constraint = x509.NameConstraints(
                permitted_subtrees=[x509.DNSName(n) for n in permitted_names], excluded_subtrees=None
            )
            builder = builder.add_extension(constraint, critical=True)
        signer = parent.key if parent else self.key
        self.cert = builder.sign(signer, hashes.SHA256())
        self.chain: list[x509.Certificate] = [self.cert, *(parent.chain if parent else [])]

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()

    def intermediate(self, name: str, **kwargs: object) -> CA:
        return CA(name, parent=self, **kwargs)  # type: ignore[arg-type]

    def issue(
        self,
        names: list[str],
        *,
        not_before: dt.datetime | None = None,
        not_after: dt.datetime | None = None,
        key_kind: str = "ec",
        key_size: int = 2048,
        ca_flag: bool = False,
        sha1: bool = False,
        common_name: str | None = None,
        broken_extension: bool = False,
        eku: list[x509.ObjectIdentifier] | None = None,
        key_identifier: bool = True,
    ) -> Issued:
        """A leaf for `names` (its subjectAltName; none at all when `names` is empty, so only the
        subject CN names the host); `broken_extension` adds an SCT-list extension with garbage
        inside, which OpenSSL serves (it never parses SCTs) but a strict parser refuses; `eku`
        replaces the serverAuth extended key usage (e.g. clientAuth only); `key_identifier=False`
        leaves out the authority key identifier (private CAs often do)."""
        key = make_key(key_kind, key_size)
        start = not_before or now() - dt.timedelta(days=1)
        end = not_after or start + dt.timedelta(days=90)
        sans: list[x509.GeneralName] = []
        for item in names:
            try:
                sans.append(x509.IPAddress(ipaddress.ip_address(item)))
            except ValueError:
                sans.append(x509.DNSName(item))
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name or (names[0] if names else "no-name")))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(start)
            .not_valid_after(end)
            .add_extension(x509.BasicConstraints(ca=ca_flag, path_length=None), critical=True)
            .add_extension(
                x509.ExtendedKeyUsage(eku if eku is not None else [x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]),
                critical=False,
            )
        )
        if key_identifier:
            builder = builder.add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),  # type: ignore[arg-type]
                critical=False,
            )
        if sans:
            builder = builder.add_extension(x509.SubjectAlternativeName(sans), critical=False)
        if broken_extension:
            garbage = x509.UnrecognizedExtension(
                x509.oid.ExtensionOID.PRECERT_SIGNED_CERTIFICATE_TIMESTAMPS, b"\x04\x03\x00\x09\xff"
            )
            builder = builder.add_extension(garbage, critical=False)
        cert = builder.sign(self.key, hashes.SHA256())
        if sha1:
            cert = _resign_sha1(cert, self.key)
        return Issued(cert=cert, key=key, parents=list(self.chain))


def self_signed(names: list[str], *, key_kind: str = "ec", days: int = 90) -> Issued:
    """A leaf that signs itself (what appliances ship with)."""
    key = make_key(key_kind)
    subject = _name(names[0], org="Self Signed")
    start = now() - dt.timedelta(days=1)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + dt.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(cert=cert, key=key, parents=[])


def temp_folder() -> Path:
    return Path(tempfile.mkdtemp(prefix="keychest-lab-"))
