"""Validate a captured chain, separately from the handshake: trust, host name, strength. Pure.

- The verdict on the chain is cryptography's X.509 verifier (`kcproto.verifier`: RFC 5280 and
  the CA/Browser Forum web profile, as browsers and sslyze judge). Trust anchors are Mozilla's
  roots (certifi) plus, per team, the team's own CA bundle — private CAs are never trusted
  globally, and chains ending at them are judged by the private-CA profile.
- When the verifier refuses a chain, KeyChest's own path builder (`kcproto.diagnosis`) says why
  (self-signed, missing intermediate, unknown root, issuer not a CA, expired intermediate,
  wrong EKU, path length, name constraints), as finding codes.
- The host name is matched as clients match it (`kcproto.identity`, RFC 9525: the SAN only).
- Key sizes and signature hashes on the path are reported as the weaknesses they are.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import Encoding

from kcproto import diagnosis, identity, verifier
from kcproto.diagnosis import Reason
from kcproto.x509 import CertificateParseError, ParsedCertificate, parse_certificate

_DER = Encoding.DER


@dataclass(frozen=True)
class TrustStore:
    """Anchors indexed by subject; `known` are intermediates we have seen but may not be served."""

    anchors: diagnosis.Index
    known: diagnosis.Index = field(default_factory=dict)
    key: str = ""
    verifier: verifier.Anchors | None = None

    def known_certificates(self) -> list[x509.Certificate]:
        return [c for certs in self.known.values() for c in certs]


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
    return TrustStore(
        anchors=diagnosis.index([*mozilla_roots(), *extra]),
        known=diagnosis.index(known),
        key=key,
        verifier=verifier.anchors(mozilla_roots(), extra),
    )


@dataclass
class Validation:
    """What validation found about one presented chain for one host name."""

    leaf: ParsedCertificate | None = None
    chain: list[ParsedCertificate] = field(default_factory=list)
    malformed: str = ""
    # cryptography's verdict: current clients accept the chain (for a name the leaf carries).
    trusted: bool = False
    profile: str = ""  # "web" (public roots) or "team" (the team's own CA) when trusted
    verifier_error: str = ""  # cryptography's reason when it refused ("" if it could not be asked)
    # The path (leaf first) to the anchor, as SHA-256 fingerprints.
    path: list[str] = field(default_factory=list)
    # Why the chain fails (finding codes: self_signed, untrusted, incomplete_chain, issuer_not_ca, ...).
    reasons: list[Reason] = field(default_factory=list)
    incomplete_chain: bool = False
    self_signed: bool = False
    untrusted_reason: str = ""
    hostname_ok: bool = True
    hostname_reason: str = ""
    ca_leaf: bool = False
    weak_key: str = ""
    weak_signature: str = ""
    # An extension of the leaf that cannot be decoded ("" if none).
    extension_error: str = ""
    # An extra certificate in the chain that is not part of the path (often an old intermediate).
    unused: list[str] = field(default_factory=list)


def presented(leaf: ParsedCertificate) -> identity.Presented:
    """The identity the leaf presents to clients (its SAN; the CN only to explain)."""
    common = tuple(leaf.names) if not leaf.has_san else ()
    return identity.Presented(dns=leaf.san_dns, ips=leaf.san_ips, has_san=leaf.has_san, common_names=common)


def hostname_matches(host: str, leaf: ParsedCertificate) -> bool:
    """RFC 9525: the SAN names only (no CN fallback), one-label wildcards, IP SANs."""
    return identity.matches(host, presented(leaf))


def with_host(result: Validation, host: str) -> Validation:
    """`result` (a chain's verdict, host-independent) judged for `host` too."""
    if result.leaf is None:
        return result
    names = presented(result.leaf)
    reason = identity.mismatch_reason(host, names)
    result.hostname_ok = not reason
    result.hostname_reason = reason
    return result


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


# Signature algorithms by hash: cryptography's hash name first, then the stored algorithm name.
_WEAK_NAMES = (("md2", "MD2"), ("md4", "MD4"), ("md5", "MD5"), ("sha1", "SHA1"), ("shawithrsa", "SHA-0"))


def _weak_hash(cert: x509.Certificate, parsed: ParsedCertificate | None) -> str:
    try:
        algorithm = cert.signature_hash_algorithm
    except UnsupportedAlgorithm:
        algorithm = None
    name = (algorithm.name if algorithm is not None else "") or (parsed.signature_algorithm if parsed else "")
    lowered = name.lower().replace("-", "")
    for needle, label in _WEAK_NAMES:
        if needle in lowered:
            return f"{label} signature"
    if algorithm is None and parsed is not None and parsed.signature_algorithm[:1].isdigit():
        return "unsupported signature algorithm"
    return ""


def _parse_chain(chain_der: Sequence[bytes]) -> tuple[list[ParsedCertificate], list[x509.Certificate], str]:
    parsed: list[ParsedCertificate] = []
    certs: list[x509.Certificate] = []
    for der in chain_der:
        try:
            one = parse_certificate(der)
            cert = x509.load_der_x509_certificate(der)
        except (CertificateParseError, ValueError) as exc:
            if not parsed:
                return [], [], str(exc)[:300] or "unreadable"
            break  # a broken extra certificate after the leaf: validate what precedes it
        parsed.append(one)
        certs.append(cert)
    return parsed, certs, ""


def validate(chain_der: Sequence[bytes], host: str, store: TrustStore, *, now: dt.datetime | None = None) -> Validation:
    """Validate a presented chain (leaf first) for `host` against `store`, at `now`."""
    now = now or dt.datetime.now(dt.UTC)
    result = Validation()
    parsed, certs, result.malformed = _parse_chain(chain_der)
    if result.malformed:
        return result
    result.chain = parsed
    leaf = result.leaf = parsed[0]
    result.extension_error = leaf.extension_error
    names = presented(leaf)
    with_host(result, host)
    result.ca_leaf = leaf.is_ca and not (len(certs) == 1 and diagnosis.self_signed(certs[0]))
    anchors = store.verifier or verifier.anchors(mozilla_roots(), [])
    known = store.known_certificates()
    verdict = verifier.verify(certs[0], [*certs[1:], *known], anchors, names=names, now=now)
    served = {c.public_bytes(_DER) for c in certs}
    if verdict.trusted:
        path = list(verdict.path)
        result.trusted, result.profile = True, verdict.profile
        if any(c.public_bytes(_DER) not in served for c in path[1:-1]):
            # Browsers complete it (AIA, preloaded intermediates); OpenSSL, curl, Python do not.
            result.reasons.append(
                Reason("incomplete_chain", "The server does not send the intermediate certificate(s)")
            )
    else:
        found = diagnosis.diagnose(certs, store.anchors, store.known, names=names, now=now)
        path = found.path
        result.verifier_error = verdict.error
        result.reasons = list(found.reasons)
        if found.anchored and found.used_known and "incomplete_chain" not in found.codes:
            result.reasons.append(
                Reason("incomplete_chain", "The server does not send the intermediate certificate(s)")
            )
    codes = {r.code for r in result.reasons}
    result.self_signed = "self_signed" in codes
    result.incomplete_chain = "incomplete_chain" in codes
    result.untrusted_reason = next((r.message for r in result.reasons if r.code == "untrusted"), "")
    result.path = [hashlib.sha256(c.public_bytes(_DER)).hexdigest() for c in path]
    _strength(result, certs, parsed, path)
    on_path = {c.public_bytes(_DER) for c in path}
    result.unused = [p.sha256 for c, p in zip(certs, parsed, strict=False) if c.public_bytes(_DER) not in on_path]
    return result


def _strength(
    result: Validation, certs: list[x509.Certificate], parsed: list[ParsedCertificate], path: list[x509.Certificate]
) -> None:
    """Weak keys and signatures: every key on the path but the anchor's, every signature but a root's own."""
    by_der = {c.public_bytes(_DER): p for c, p in zip(certs, parsed, strict=False)}
    for cert in path:
        is_root = diagnosis.self_signed(cert)
        if is_root and cert is not certs[0]:
            continue
        facts = by_der.get(cert.public_bytes(_DER))
        if facts is not None and not result.weak_key:
            result.weak_key = _weak_key(facts)
        if not result.weak_signature and not is_root:
            result.weak_signature = _weak_hash(cert, facts)
