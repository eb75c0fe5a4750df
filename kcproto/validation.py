"""Validate a captured chain, separately from the handshake: trust path, hostname, strength.

Pure (no Django). Trust anchors are Mozilla's roots (certifi) plus, per team, the team's own CA
bundle — private CAs are never trusted globally. The path builder is ours, not OpenSSL's, so it
can say *why* a chain fails (self-signed, missing intermediate, unknown root) and still accept
SHA-1 or small keys long enough to report them as weaknesses.
"""

from __future__ import annotations

import hashlib
import ipaddress
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from kcproto.names import name_matches
from kcproto.x509 import CertificateParseError, ParsedCertificate, parse_certificate

MAX_PATH = 10
MAX_NAMES = 1000
WEAK_HASHES = {"md5", "sha1", "md2", "md4"}
_DER = Encoding.DER


@dataclass(frozen=True)
class TrustStore:
    """Anchors indexed by subject; `known` are intermediates we have seen but may not be served."""

    anchors: dict[bytes, tuple[x509.Certificate, ...]]
    known: dict[bytes, tuple[x509.Certificate, ...]] = field(default_factory=dict)
    key: str = ""

    def issuers_of(self, cert: x509.Certificate, *, known: bool = False) -> tuple[x509.Certificate, ...]:
        table = self.known if known else self.anchors
        return table.get(cert.issuer.public_bytes(), ())


def _index(certs: Iterable[x509.Certificate]) -> dict[bytes, tuple[x509.Certificate, ...]]:
    table: dict[bytes, list[x509.Certificate]] = {}
    for cert in certs:
        table.setdefault(cert.subject.public_bytes(), []).append(cert)
    return {k: tuple(v) for k, v in table.items()}


@lru_cache(maxsize=1)
def mozilla_roots() -> tuple[x509.Certificate, ...]:
    import certifi

    with open(certifi.where(), "rb") as handle, warnings.catch_warnings():
        # A few old roots have non-positive serials; cryptography warns, the roots are still roots.
        warnings.simplefilter("ignore")
        return tuple(x509.load_pem_x509_certificates(handle.read()))


@lru_cache(maxsize=256)
def trust_store(extra_pem: str = "", known_pem: str = "") -> TrustStore:
    """certifi roots plus `extra_pem` (a team bundle) as anchors; `known_pem` as extra intermediates."""
    extra = list(x509.load_pem_x509_certificates(extra_pem.encode())) if extra_pem.strip() else []
    known = list(x509.load_pem_x509_certificates(known_pem.encode())) if known_pem.strip() else []
    key = hashlib.sha256((extra_pem + "\0" + known_pem).encode()).hexdigest()[:16]
    return TrustStore(anchors=_index([*mozilla_roots(), *extra]), known=_index(known), key=key)


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key made `cert`'s signature (SHA-1 accepted: weakness is reported, not hidden)."""
    if cert.issuer != issuer.subject:
        return False
    try:
        key = issuer.public_key()
        algorithm = cert.signature_hash_algorithm
        if isinstance(key, rsa.RSAPublicKey):
            pad = cert.signature_algorithm_parameters
            if not isinstance(pad, padding.PSS | padding.PKCS1v15):
                pad = padding.PKCS1v15()
            key.verify(cert.signature, cert.tbs_certificate_bytes, pad, algorithm)  # type: ignore[arg-type]
        elif isinstance(key, ec.EllipticCurvePublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(algorithm))  # type: ignore[arg-type]
        elif isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes)
        elif isinstance(key, dsa.DSAPublicKey):
            key.verify(cert.signature, cert.tbs_certificate_bytes, algorithm or hashes.SHA256())
        else:
            return False
    except (InvalidSignature, UnsupportedAlgorithm, ValueError, TypeError):
        return False
    return True


def _self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and signed_by(cert, cert)


@dataclass
class Validation:
    """What validation found about one presented chain for one host name."""

    leaf: ParsedCertificate | None = None
    chain: list[ParsedCertificate] = field(default_factory=list)
    malformed: str = ""
    trusted: bool = False
    # The path (leaf first) to the anchor, as SHA-256 fingerprints.
    path: list[str] = field(default_factory=list)
    incomplete_chain: bool = False
    self_signed: bool = False
    untrusted_reason: str = ""
    hostname_ok: bool = True
    ca_leaf: bool = False
    weak_key: str = ""
    weak_signature: str = ""
    # An extra certificate in the chain that is not part of the path (often an old intermediate).
    unused: list[str] = field(default_factory=list)


def hostname_matches(host: str, leaf: ParsedCertificate) -> bool:
    """RFC 6125: the SAN names (CN only when the certificate has no SAN), one-label wildcards, IP SANs."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        ip = None
    if ip is not None:
        return any(ipaddress.ip_address(a) == ip for a in leaf.ip_addresses[:MAX_NAMES])
    return any(name_matches(pattern, host) for pattern in leaf.names[:MAX_NAMES])


def _weak_key(parsed: ParsedCertificate) -> str:
    if parsed.key_type == "rsa" and parsed.key_size < 2048:
        return f"RSA {parsed.key_size}-bit key"
    if parsed.key_type == "dsa":
        return f"DSA {parsed.key_size}-bit key"
    if parsed.key_type == "ec" and parsed.key_size < 256:
        return f"EC {parsed.key_size}-bit key"
    if parsed.key_type == "unknown":
        return "unknown key type"
    return ""


def _weak_hash(cert: x509.Certificate) -> str:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return "unsupported signature algorithm"
    if algorithm is not None and algorithm.name in WEAK_HASHES:
        return f"{algorithm.name.upper()} signature"
    return ""


def _build_path(certs: Sequence[x509.Certificate], store: TrustStore) -> tuple[list[x509.Certificate], bool, bool]:
    """(path, reached an anchor, used a known-but-not-served intermediate)."""
    path = [certs[0]]
    used_known = False
    pool = list(certs[1:])
    current = certs[0]
    for _ in range(MAX_PATH):
        for anchor in store.issuers_of(current):
            if anchor.public_bytes(_DER) == current.public_bytes(_DER) or signed_by(current, anchor):
                if anchor.public_bytes(_DER) != current.public_bytes(_DER):
                    path.append(anchor)
                return path, True, used_known
        candidates = [c for c in pool if c.subject == current.issuer and c not in path and signed_by(current, c)]
        if not candidates:
            candidates = [c for c in store.issuers_of(current, known=True) if c not in path and signed_by(current, c)]
            if candidates:
                used_known = True
        if not candidates or _self_signed(current):
            return path, False, used_known
        current = candidates[0]
        path.append(current)
    return path, False, used_known


def validate(chain_der: Sequence[bytes], host: str, store: TrustStore) -> Validation:
    """Validate a presented chain (leaf first) for `host` against `store`."""
    result = Validation()
    parsed: list[ParsedCertificate] = []
    certs: list[x509.Certificate] = []
    for der in chain_der:
        try:
            parsed.append(parse_certificate(der))
            certs.append(x509.load_der_x509_certificate(der))
        except (CertificateParseError, ValueError) as exc:
            if not parsed:
                result.malformed = str(exc)[:300]
                return result
            break  # a broken extra certificate after the leaf: validate what precedes it
    result.chain = parsed
    leaf = parsed[0]
    result.leaf = leaf
    result.hostname_ok = hostname_matches(host, leaf)
    result.ca_leaf = leaf.is_ca and not (len(certs) == 1 and _self_signed(certs[0]))
    path, anchored, used_known = _build_path(certs, store)
    result.trusted = anchored and not used_known
    result.incomplete_chain = anchored and used_known
    by_der = {c.public_bytes(_DER): p for c, p in zip(certs, parsed, strict=False)}
    result.path = [hashlib.sha256(c.public_bytes(_DER)).hexdigest() for c in path]
    if not anchored:
        last = path[-1]
        if len(path) == 1 and _self_signed(certs[0]):
            result.self_signed = True
            result.untrusted_reason = "the certificate is self-signed"
        elif _self_signed(last):
            result.untrusted_reason = f"the root {last.subject.rfc4514_string()[:200]} is not trusted"
        elif last is certs[0]:
            # Nothing above the leaf: the server does not send its intermediate(s).
            result.incomplete_chain = True
            result.untrusted_reason = f"no trusted issuer found for {last.issuer.rfc4514_string()[:200]}"
        else:
            # An intermediate whose (unsent, as it should be) root is not a trusted one.
            result.untrusted_reason = f"the root {last.issuer.rfc4514_string()[:200]} is not trusted"
    # Strength: every key on the path except the anchor's, every signature except the root's own.
    checked = [c for c in path if not (c is not certs[0] and _self_signed(c))]
    for cert in checked:
        facts = by_der.get(cert.public_bytes(_DER))
        if facts is not None and not result.weak_key:
            result.weak_key = _weak_key(facts)
        if not result.weak_signature and not _self_signed(cert):
            result.weak_signature = _weak_hash(cert)
    on_path = {c.public_bytes(_DER) for c in path}
    result.unused = [p.sha256 for c, p in zip(certs, parsed, strict=False) if c.public_bytes(_DER) not in on_path]
    return result
