"""Why a chain fails: KeyChest's own path builder, used only to explain a refusal. Pure.

The verdict is cryptography's (`kcproto.verifier`). When it refuses a chain, this module
rebuilds the path itself (it accepts what the verifier refuses, so it gets as far as the
anchor) and names each fault on it, as finding codes with a message:

- `self_signed`, `untrusted` (unknown root), `incomplete_chain` (the issuer is not sent);
- `issuer_not_ca`: an issuer without basicConstraints cA, or whose keyUsage lacks keyCertSign;
- `expired_intermediate`: an intermediate (or the root) outside its validity;
- `not_for_server_auth`: the leaf's extended key usage does not include serverAuth;
- `path_length_exceeded`, `name_constraints_violated`.

Faults of the leaf that have findings of their own (its dates, cA on the leaf, SHA-1, a weak
key, a missing SAN) are left to those.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed448, ed25519, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import ExtendedKeyUsageOID

from kcproto.identity import Presented

MAX_PATH = 10
_DER = Encoding.DER
Index = dict[bytes, tuple[x509.Certificate, ...]]
E = TypeVar("E", bound=x509.ExtensionType)


def index(certs: Iterable[x509.Certificate]) -> Index:
    """Certificates by subject (DER), to find a certificate's issuers."""
    table: dict[bytes, list[x509.Certificate]] = {}
    for cert in certs:
        table.setdefault(cert.subject.public_bytes(), []).append(cert)
    return {k: tuple(v) for k, v in table.items()}


def signed_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    """Whether `issuer`'s key made `cert`'s signature (SHA-1 accepted: this explains, it does not judge)."""
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


def self_signed(cert: x509.Certificate) -> bool:
    return cert.issuer == cert.subject and signed_by(cert, cert)


def extension(cert: x509.Certificate, kind: type[E]) -> E | None:
    """One extension's value; None when absent or unreadable (a broken one explains nothing here)."""
    try:
        return cert.extensions.get_extension_for_class(kind).value
    except (x509.ExtensionNotFound, x509.DuplicateExtension, x509.UnsupportedGeneralNameType, ValueError):
        return None


def _name(cert: x509.Certificate) -> str:
    try:
        return cert.subject.rfc4514_string()[:200]
    except ValueError:
        return "(unreadable name)"


@dataclass(frozen=True)
class Reason:
    """One fault of a chain, as a finding code and what to tell the user."""

    code: str
    message: str


@dataclass
class Diagnosis:
    """The path KeyChest built (leaf first) and what is wrong with it."""

    path: list[x509.Certificate]
    anchored: bool = False
    used_known: bool = False  # a known intermediate the server did not send completed the path
    reasons: list[Reason] = field(default_factory=list)

    @property
    def codes(self) -> set[str]:
        return {r.code for r in self.reasons}


def build_path(
    certs: Sequence[x509.Certificate], anchors: Index, known: Index
) -> tuple[list[x509.Certificate], bool, bool]:
    """(path, reached an anchor, used a known-but-not-served intermediate)."""
    path = [certs[0]]
    used_known = False
    pool = list(certs[1:])
    current = certs[0]
    for _ in range(MAX_PATH):
        for anchor in anchors.get(current.issuer.public_bytes(), ()):
            same = anchor.public_bytes(_DER) == current.public_bytes(_DER)
            if same or signed_by(current, anchor):
                if not same:
                    path.append(anchor)
                return path, True, used_known
        candidates = [c for c in pool if c.subject == current.issuer and c not in path and signed_by(current, c)]
        if not candidates:
            candidates = [
                c for c in known.get(current.issuer.public_bytes(), ()) if c not in path and signed_by(current, c)
            ]
            used_known = used_known or bool(candidates)
        if not candidates or self_signed(current):
            return path, False, used_known
        current = candidates[0]
        path.append(current)
    return path, False, used_known


def _unanchored(certs: Sequence[x509.Certificate], path: list[x509.Certificate]) -> list[Reason]:
    last = path[-1]
    if len(path) == 1 and self_signed(certs[0]):
        return [Reason("self_signed", "The certificate is self-signed")]
    if self_signed(last):
        return [Reason("untrusted", f"Untrusted: the root {_name(last)} is not trusted")]
    try:
        issuer = last.issuer.rfc4514_string()[:200]
    except ValueError:
        issuer = "(unreadable name)"
    if last is certs[0]:
        # Nothing above the leaf: the server does not send its intermediate(s).
        return [
            Reason("untrusted", f"Untrusted: no trusted issuer found for {issuer}"),
            Reason("incomplete_chain", "The server does not send the intermediate certificate(s)"),
        ]
    # An intermediate whose (unsent, as it should be) root is not a trusted one.
    return [Reason("untrusted", f"Untrusted: the root {issuer} is not trusted")]


def _issuer_faults(path: list[x509.Certificate], now: dt.datetime) -> list[Reason]:
    out: list[Reason] = []
    for depth, cert in enumerate(path[1:], start=1):
        role = "root" if depth == len(path) - 1 and self_signed(cert) else "intermediate"
        constraints = extension(cert, x509.BasicConstraints)
        usage = extension(cert, x509.KeyUsage)
        if constraints is None or not constraints.ca:
            what = "has no basicConstraints" if constraints is None else "has basicConstraints cA=false"
            out.append(Reason("issuer_not_ca", f"The issuing certificate {_name(cert)} {what}: it is not a CA"))
        elif usage is not None and not usage.key_cert_sign:
            out.append(
                Reason(
                    "issuer_not_ca",
                    f"The issuing CA {_name(cert)} has a keyUsage without keyCertSign: it may not sign certificates",
                )
            )
        if constraints is not None and constraints.path_length is not None and depth - 1 > constraints.path_length:
            out.append(
                Reason(
                    "path_length_exceeded",
                    f"{_name(cert)} allows {constraints.path_length} CA certificate(s) below it "
                    f"(pathLenConstraint), the path has {depth - 1}",
                )
            )
        if now > cert.not_valid_after_utc:
            out.append(
                Reason(
                    "expired_intermediate",
                    f"The {role} certificate {_name(cert)} expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC",
                )
            )
        elif now < cert.not_valid_before_utc:
            out.append(
                Reason(
                    "expired_intermediate",
                    f"The {role} certificate {_name(cert)} is valid only from "
                    f"{cert.not_valid_before_utc:%Y-%m-%d %H:%M} UTC",
                )
            )
    return out


def _dns_within(name: str, base: str) -> bool:
    name, base = name.lower(), base.lower()
    if base.startswith("."):
        return name.endswith(base)
    return name == base or name.endswith("." + base)


def _ip_within(ip: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> bool:
    try:
        return ipaddress.ip_address(ip) in network
    except ValueError:
        return False


def _constraint_faults(path: list[x509.Certificate], names: Presented) -> list[Reason]:
    out: list[Reason] = []
    for cert in path[1:]:
        constraints = extension(cert, x509.NameConstraints)
        if constraints is None:
            continue
        permitted = constraints.permitted_subtrees or []
        excluded = constraints.excluded_subtrees or []
        allowed_dns = [g.value for g in permitted if isinstance(g, x509.DNSName)]
        allowed_ip = [g.value for g in permitted if isinstance(g, x509.IPAddress)]
        denied_dns = [g.value for g in excluded if isinstance(g, x509.DNSName)]
        denied_ip = [g.value for g in excluded if isinstance(g, x509.IPAddress)]
        bad = [n for n in names.dns if allowed_dns and not any(_dns_within(n, b) for b in allowed_dns)]
        bad += [n for n in names.dns if any(_dns_within(n, b) for b in denied_dns)]
        bad += [i for i in names.ips if allowed_ip and not any(_ip_within(i, net) for net in allowed_ip)]  # type: ignore[arg-type]
        bad += [i for i in names.ips if any(_ip_within(i, net) for net in denied_ip)]  # type: ignore[arg-type]
        if bad:
            shown = ", ".join(str(v) for v in [*allowed_dns, *allowed_ip][:5]) or "nothing it excludes"
            out.append(
                Reason(
                    "name_constraints_violated",
                    f"{_name(cert)} may issue only for {shown} (name constraints); the certificate names "
                    f"{', '.join(bad[:5])}",
                )
            )
    return out


def _usage_faults(leaf: x509.Certificate) -> list[Reason]:
    usage = extension(leaf, x509.ExtendedKeyUsage)
    if usage is None or ExtendedKeyUsageOID.SERVER_AUTH in usage:
        return []
    named = ", ".join(getattr(oid, "_name", "") or oid.dotted_string for oid in usage) or "nothing"
    return [
        Reason(
            "not_for_server_auth",
            f"The certificate's extended key usage allows {named}, not TLS server authentication (serverAuth)",
        )
    ]


def diagnose(
    certs: Sequence[x509.Certificate], anchors: Index, known: Index, *, names: Presented, now: dt.datetime
) -> Diagnosis:
    """The path and every chain fault on it (certs: as presented, leaf first)."""
    path, anchored, used_known = build_path(certs, anchors, known)
    result = Diagnosis(path=path, anchored=anchored, used_known=used_known)
    if not anchored:
        result.reasons.extend(_unanchored(certs, path))
    result.reasons.extend(_issuer_faults(path, now))
    result.reasons.extend(_constraint_faults(path, names))
    result.reasons.extend(_usage_faults(certs[0]))
    return result
