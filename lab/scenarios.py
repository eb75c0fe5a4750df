"""Every lab scenario in one catalogue: the demo (`python -m lab`), the verdict table
(`scripts/verdicts.py`, docs/scanner.md) and its test serve the same servers.

Each scenario says what it serves, which findings KeyChest's spot check must report, and — where
OpenSSL or sslyze judge differently — why. A disagreement without a reason fails the verdict test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from cryptography.x509.oid import ExtendedKeyUsageOID

from lab.pki import CA, now, self_signed
from lab.tls import Endpoint, Lab

DOMAIN = "lab.keychest.test"

# Why a tool judges a scenario differently from KeyChest (the table's "explained" column).
OPENSSL_CN_FALLBACK = (
    "OpenSSL's host check still falls back to the subject CN when a certificate has no DNS SAN; "
    "browsers stopped in 2017 (RFC 9525 §6.3, CA/Browser Forum), so do KeyChest and sslyze"
)
OPENSSL_CA_LEAF = (
    "OpenSSL accepts a server certificate with cA=true; the CA/Browser Forum profile that browsers and "
    "cryptography's verifier (KeyChest, sslyze) apply forbids it in an end-entity certificate"
)
SSLYZE_LEAF_KEY = (
    "sslyze's path validation checks the keys that sign certificates, not the leaf's own key; "
    "OpenSSL at its default security level (2) refuses the handshake with an RSA key under 2048 bits"
)
SSLYZE_BROKEN_EXTENSION = (
    "the SCT list holds garbage: sslyze's certificate plugin decodes every extension through "
    "cryptography and stops there; the chain itself is valid (OpenSSL and cryptography's verifier "
    "accept it), so KeyChest reports the broken extension as a warning and monitors the certificate"
)


@dataclass(frozen=True)
class Scenario:
    """One lab server and what KeyChest must say about it."""

    label: str
    what: str
    build: Callable[[Lab, str], Endpoint]  # (lab, host name) -> the serving endpoint
    expect: frozenset[str] = frozenset()  # the spot check's finding codes
    protocol: str = "tls"
    # tool -> why it judges differently; only for scenarios where it does.
    explained: dict[str, str] = field(default_factory=dict)
    label_in_dns: str = ""  # the host's first label, when it is not `label`

    @property
    def host(self) -> str:
        return f"{self.label_in_dns or self.label}.{DOMAIN}"

    def serve(self, lab: Lab) -> Endpoint:
        return self.build(lab, self.host)


def _old() -> dt.datetime:
    return now() - dt.timedelta(days=100)


def _below(lab: Lab, **flaw: object) -> CA:
    """A sub-CA under the lab intermediate with one flaw (see `CA`'s switches)."""
    return CA("KeyChest Lab Sub-CA", parent=lab.intermediate, **flaw)  # type: ignore[arg-type]


def _sha1(lab: Lab, host: str) -> Endpoint:
    rsa = lab.root.intermediate("KeyChest Lab RSA Intermediate", key_kind="rsa")
    return lab.tls(rsa.issue([host], key_kind="rsa", sha1=True))


def _path_length(lab: Lab, host: str) -> Endpoint:
    capped = lab.root.intermediate("KeyChest Lab Capped Intermediate", path_length=0)
    return lab.tls(capped.intermediate("KeyChest Lab Sub-CA").issue([host]))


def _long_chain(lab: Lab, host: str) -> Endpoint:
    filler = [lab.leaf([f"filler{i}.{DOMAIN}"]) for i in range(18)]
    return lab.tls(lab.leaf([host]), extra=filler)


def _codes(*codes: str) -> frozenset[str]:
    return frozenset(codes)


SCENARIOS: tuple[Scenario, ...] = (
    Scenario("valid", "a valid chain from the lab root", lambda lab, h: lab.tls(lab.leaf([h]))),
    Scenario("wildcard", "a wildcard certificate covering the name", lambda lab, h: lab.tls(lab.leaf([f"*.{DOMAIN}"]))),
    Scenario(
        "wildcard-deep",
        "a wildcard one label too high (*.keychest.test for x.lab.keychest.test)",
        lambda lab, h: lab.tls(lab.leaf([f"*.{DOMAIN.split('.', 1)[1]}"])),
        _codes("hostname_mismatch"),
    ),
    Scenario(
        "idn",
        "an IDN host (its A-label in the SAN)",
        lambda lab, h: lab.tls(lab.leaf([h])),
        label_in_dns="xn--bcher-kva",
    ),
    Scenario(
        "expired",
        "the leaf expired yesterday",
        lambda lab, h: lab.tls(lab.leaf([h], not_before=_old(), not_after=now() - dt.timedelta(days=1))),
        _codes("expired"),
    ),
    Scenario(
        "future",
        "the leaf is valid only from in three days",
        lambda lab, h: lab.tls(lab.leaf([h], not_before=now() + dt.timedelta(days=3))),
        _codes("not_yet_valid"),
    ),
    Scenario(
        "renewal-due",
        "20 of 90 days left (clients still connect)",
        lambda lab, h: lab.tls(lab.leaf([h], not_before=now() - dt.timedelta(days=70))),
        _codes("renewal_due"),
    ),
    Scenario(
        "mismatch",
        "the certificate names another host",
        lambda lab, h: lab.tls(lab.leaf(["somewhere-else.example"])),
        _codes("hostname_mismatch"),
    ),
    Scenario(
        "trailing-dot",
        "the only SAN is the host name with a trailing dot",
        lambda lab, h: lab.tls(lab.leaf([h + "."])),
        _codes("hostname_mismatch"),
    ),
    Scenario(
        "cn-only",
        "no subjectAltName: the host name is only in the subject CN",
        lambda lab, h: lab.tls(lab.leaf([], common_name=h)),
        _codes("hostname_mismatch"),
        explained={"openssl": OPENSSL_CN_FALLBACK},
    ),
    Scenario(
        "ip-like-cn",
        "no subjectAltName, subject CN 01.2.3.4 (not a valid IP address)",
        lambda lab, h: lab.tls(lab.leaf([], common_name="01.2.3.4")),
        _codes("hostname_mismatch"),
    ),
    Scenario("self-signed", "a self-signed leaf", lambda lab, h: lab.tls(self_signed([h])), _codes("self_signed")),
    Scenario(
        "untrusted",
        "a chain to an unknown root (sent along)",
        lambda lab, h: lab.tls(CA("Rogue Root").intermediate("Rogue Intermediate").issue([h]), include_root=True),
        _codes("untrusted"),
    ),
    Scenario(
        "incomplete",
        "the server does not send its intermediate",
        lambda lab, h: lab.tls(lab.leaf([h]), include_intermediates=False),
        _codes("incomplete_chain", "untrusted"),
    ),
    Scenario(
        "weak-key",
        "an RSA 1024-bit leaf key",
        lambda lab, h: lab.tls(lab.leaf([h], key_kind="rsa", key_size=1024)),
        _codes("weak_key"),
        explained={"sslyze": SSLYZE_LEAF_KEY},
    ),
    Scenario("sha1", "the leaf is signed with SHA-1", _sha1, _codes("weak_signature")),
    Scenario(
        "ca-leaf",
        "the server certificate has cA=true",
        lambda lab, h: lab.tls(lab.leaf([h], ca_flag=True)),
        _codes("ca_leaf"),
        explained={"openssl": OPENSSL_CA_LEAF},
    ),
    Scenario(
        "issuer-not-ca",
        "the issuing certificate has basicConstraints cA=false",
        lambda lab, h: lab.tls(_below(lab, ca_flag=False).issue([h])),
        _codes("issuer_not_ca"),
    ),
    Scenario(
        "no-keycertsign",
        "the issuing CA's keyUsage lacks keyCertSign",
        lambda lab, h: lab.tls(_below(lab, key_cert_sign=False).issue([h])),
        _codes("issuer_not_ca"),
    ),
    Scenario(
        "expired-intermediate",
        "the intermediate expired yesterday",
        lambda lab, h: lab.tls(_below(lab, not_before=_old(), not_after=now() - dt.timedelta(days=1)).issue([h])),
        _codes("expired_intermediate"),
    ),
    Scenario(
        "client-auth-only",
        "the leaf's extended key usage is clientAuth only",
        lambda lab, h: lab.tls(lab.leaf([h], eku=[ExtendedKeyUsageOID.CLIENT_AUTH])),
        _codes("not_for_server_auth"),
    ),
    Scenario(
        "path-length",
        "an intermediate with pathLenConstraint 0 has a sub-CA below it",
        _path_length,
        _codes("path_length_exceeded"),
    ),
    Scenario(
        "name-constraints",
        "the intermediate may issue only under permitted.example; the leaf names a lab host",
        lambda lab, h: lab.tls(_below(lab, permitted_names=["permitted.example"]).issue([h])),
        _codes("name_constraints_violated"),
    ),
    Scenario(
        "legacy",
        "TLS 1.3, and TLS 1.0 and 1.1 too (clients still connect)",
        lambda lab, h: lab.tls(lab.leaf([h]), legacy=True),
        _codes("legacy_tls"),
    ),
    Scenario(
        "tls10-only",
        "TLS 1.0 and nothing newer",
        lambda lab, h: lab.tls(lab.leaf([h]), max_version="TLSv1"),
        _codes("legacy_tls"),
    ),
    Scenario(
        "tls11-only",
        "TLS 1.0 and 1.1, nothing newer",
        lambda lab, h: lab.tls(lab.leaf([h]), max_version="TLSv1_1"),
        _codes("legacy_tls"),
    ),
    Scenario(
        "malformed",
        "an SCT-list extension with garbage inside",
        lambda lab, h: lab.tls(lab.leaf([h], broken_extension=True)),
        _codes("malformed_certificate"),
        explained={"sslyze": SSLYZE_BROKEN_EXTENSION},
    ),
    Scenario(
        "long-chain",
        "18 unrelated certificates after the chain (clients still connect)",
        _long_chain,
        _codes("chain_too_long"),
    ),
    Scenario(
        "anonymous",
        "an anonymous cipher: no certificate at all",
        lambda lab, h: lab.anonymous(),
        _codes("no_certificate"),
    ),
    Scenario(
        "smtp", "SMTP with STARTTLS, valid chain", lambda lab, h: lab.starttls("smtp", lab.leaf([h])), protocol="smtp"
    ),
    Scenario(
        "imap", "IMAP with STARTTLS, valid chain", lambda lab, h: lab.starttls("imap", lab.leaf([h])), protocol="imap"
    ),
    Scenario("banner", "an SSH banner, no TLS", lambda lab, h: lab.banner(), _codes("not_tls")),
)
