"""Is a newly logged certificate expected? Allowed CAs, CAA records and known keys.

Most new certificates for a team's domains are its own renewals; the one that matters is the
certificate nobody on the team asked for: another CA, a CA the domain's CAA record does not
authorise, or a key the team does not know. This module judges one certificate against those
three facts and says why it is unexpected. Pure code: the facts come from the caller.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_pem_public_key

# Issuer organisations (as they appear in issuer names, lower-case) and the CAA issuer domains
# (RFC 8659 "issue" values) each CA's policy documents say it checks. Several brands share a
# CA (ZeroSSL is Sectigo); one CA may answer to several identifiers.
_CA_IDENTIFIERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("let's encrypt", frozenset({"letsencrypt.org"})),
    ("zerossl", frozenset({"sectigo.com", "zerossl.com"})),
    ("sectigo", frozenset({"sectigo.com", "comodoca.com", "comodo.com", "usertrust.com", "trust-provider.com"})),
    ("comodo", frozenset({"sectigo.com", "comodoca.com", "comodo.com"})),
    ("usertrust", frozenset({"sectigo.com", "usertrust.com"})),
    ("digicert", frozenset({"digicert.com", "symantec.com", "thawte.com", "geotrust.com", "rapidssl.com"})),
    ("rapidssl", frozenset({"digicert.com", "rapidssl.com"})),
    ("geotrust", frozenset({"digicert.com", "geotrust.com"})),
    ("thawte", frozenset({"digicert.com", "thawte.com"})),
    ("globalsign", frozenset({"globalsign.com"})),
    ("google trust services", frozenset({"pki.goog"})),
    ("amazon", frozenset({"amazon.com", "amazontrust.com", "awstrust.com", "amazonaws.com"})),
    ("microsoft", frozenset({"microsoft.com"})),
    ("godaddy", frozenset({"godaddy.com", "starfieldtech.com"})),
    ("starfield", frozenset({"starfieldtech.com", "godaddy.com"})),
    ("entrust", frozenset({"entrust.net", "affirmtrust.com"})),
    ("buypass", frozenset({"buypass.com", "buypass.no"})),
    ("ssl.com", frozenset({"ssl.com"})),
    ("certum", frozenset({"certum.pl", "certum.eu"})),
    ("asseco", frozenset({"certum.pl", "certum.eu"})),
    ("actalis", frozenset({"actalis.it"})),
    ("harica", frozenset({"harica.gr"})),
    ("telia", frozenset({"telia.com", "teliasonera.com"})),
    ("identrust", frozenset({"identrust.com"})),
    ("swisssign", frozenset({"swisssign.com"})),
    ("quovadis", frozenset({"quovadisglobal.com", "digicert.com"})),
    ("cloudflare", frozenset({"digicert.com", "letsencrypt.org", "pki.goog", "sectigo.com", "comodoca.com"})),
)


LETS_ENCRYPT = "letsencrypt.org"


def lets_encrypt_issued(issuer: str) -> bool:
    """Whether Let's Encrypt issued under `issuer`: its CAA identity and no other CA's.

    Let's Encrypt's rate limits count only its own certificates. An issuer that answers to
    several identities (Cloudflare's, which front several CAs) is not Let's Encrypt's."""
    return caa_identifiers(issuer) == {LETS_ENCRYPT}


def caa_identifiers(issuer: str) -> frozenset[str]:
    """The CAA issuer domains that cover certificates from `issuer` (an issuer name as text)."""
    text = issuer.lower()
    found: set[str] = set()
    for marker, identifiers in _CA_IDENTIFIERS:
        if marker in text:
            found |= identifiers
    return frozenset(found)


def spki_sha256(der: bytes) -> str:
    """Hex SHA-256 of the certificate's SubjectPublicKeyInfo (the "known key" pin)."""
    spki = (
        x509.load_der_x509_certificate(der).public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    )
    return hashlib.sha256(spki).hexdigest()


_PEM_BLOCK = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----.*?-----END \1-----", re.S)


def pins_from_text(text: str) -> list[str]:
    """Key pins from what people paste: hex pins one per line, and PEM certificates or public
    keys (their SubjectPublicKeyInfo is hashed here). A private key is refused, never read.
    Raises ValueError naming the first bad entry."""
    pins: list[str] = []
    for block in _PEM_BLOCK.finditer(text):
        label = block.group(1)
        if "PRIVATE" in label:
            raise ValueError("that is a private key: paste the certificate or the public key, never the private key")
        key: Any
        try:
            if label == "CERTIFICATE":
                key = x509.load_pem_x509_certificate(block.group(0).encode()).public_key()
            elif label == "PUBLIC KEY":
                key = load_pem_public_key(block.group(0).encode())
            else:
                raise ValueError(f"a {label.lower()} holds no key to pin; paste a certificate or a public key")
        except (TypeError, ValueError) as error:
            if "holds no key" in str(error):
                raise
            raise ValueError(f"the {label.lower()} cannot be read") from None
        pins.append(hashlib.sha256(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)).hexdigest())
    rest = _PEM_BLOCK.sub("", text)
    if "-----BEGIN" in rest:
        raise ValueError("a PEM block is not complete (its -----END line is missing)")
    for line in rest.splitlines():
        if line.strip():
            try:
                pins.append(normalise_pin(line))
            except ValueError as error:
                raise ValueError(f"{line.strip()[:80]!r}: {error}") from None
    return pins


def normalise_pin(text: str) -> str:
    """A key pin as users paste it: hex with or without colons, any case. Raises ValueError."""
    cleaned = text.strip().replace(":", "").replace(" ", "").lower()
    if len(cleaned) != 64 or any(c not in "0123456789abcdef" for c in cleaned):
        raise ValueError(
            "a key pin is the SHA-256 of the SubjectPublicKeyInfo (64 hex digits), or paste the PEM certificate or public key"
        )
    return cleaned


@dataclass(frozen=True)
class Caa:
    """A domain's relevant CAA record set (RFC 8659), reduced to issuer domains.

    `found` is False when no CAA record exists up the tree: then any CA may issue. An empty
    `issue` with `found` True means no CA may issue at all ("0 issue ;").
    """

    domain: str
    found: bool
    issue: frozenset[str] = frozenset()
    issuewild: frozenset[str] | None = None  # None: no issuewild property, "issue" applies to wildcards

    def allows(self, identifiers: frozenset[str], *, wildcard: bool) -> bool:
        if not self.found:
            return True
        allowed = self.issuewild if wildcard and self.issuewild is not None else self.issue
        return bool(allowed & identifiers)


def caa_value_domain(value: str) -> str:
    """The issuer domain of a CAA issue/issuewild value: 'letsencrypt.org; validationmethods=dns-01'."""
    return value.split(";", 1)[0].strip().lower().rstrip(".")


@dataclass(frozen=True)
class Policy:
    """What a team expects: CAs it uses (CAA identifiers or issuer name text), its key pins, CAA use."""

    allowed_issuers: frozenset[str] = frozenset()
    known_keys: frozenset[str] = frozenset()
    check_caa: bool = True

    @property
    def active(self) -> bool:
        return bool(self.allowed_issuers or self.known_keys or self.check_caa)


def unexpected_reasons(
    *,
    issuer: str,
    names: Iterable[str],
    der: bytes,
    policy: Policy,
    caa: Iterable[Caa] = (),
) -> list[str]:
    """Why this certificate is unexpected for a team with `policy`; empty when it is expected.

    `names` are the certificate's names that concern the team; `caa` the CAA sets of the watched
    domains they fall under."""
    reasons: list[str] = []
    identifiers = caa_identifiers(issuer)
    if policy.allowed_issuers:
        text = issuer.lower()
        if not any(entry in identifiers or entry in text for entry in policy.allowed_issuers):
            reasons.append(f"issuer {issuer} is not one of the team's allowed CAs")
    if policy.check_caa:
        wildcard = any(name.startswith("*.") for name in names)
        for record in caa:
            if not record.allows(identifiers, wildcard=wildcard):
                listed = sorted(record.issuewild if wildcard and record.issuewild is not None else record.issue)
                allowed = ", ".join(listed) if listed else "no CA at all"
                reasons.append(f"the CAA record of {record.domain} allows {allowed}, not {issuer}")
    if policy.known_keys:
        try:
            pin = spki_sha256(der)
        except ValueError:
            pin = ""
        if pin not in policy.known_keys:
            reasons.append(f"its key (SHA-256 of SPKI {pin[:16]}…) is not one of the team's known keys")
    return reasons
