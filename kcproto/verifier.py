"""The verdict on a chain: cryptography's X.509 verifier, as browsers judge chains. Pure.

`cryptography.x509.verification` implements RFC 5280 path validation with the CA/Browser Forum
web profile (every issuer a CA with keyCertSign, every certificate within its dates, serverAuth
in the leaf's EKU, path length and name constraints, no SHA-1, RSA keys of 2048 bits or more);
sslyze uses the same verifier. KeyChest's own path builder (`kcproto.diagnosis`) only explains
*why* a chain it refuses fails.

Two profiles:
- `web`: cryptography's defaults, against Mozilla's roots plus the team's own CAs;
- `team`: for chains that end at one of the team's own CAs, RFC 5280 as clients enforce it
  (basicConstraints cA on every issuer, keyCertSign when keyUsage is present, dates, EKU,
  path length, name constraints, a SAN) without the CA/Browser Forum's issuance rules that
  only public CAs follow and that OpenSSL and browsers do not enforce for a locally trusted
  root (an authority key identifier on every certificate, keyUsage on the root).

The chain is judged for a name the leaf itself carries in its SAN, so the verdict is the
chain's alone (cached per chain and trust store); whether it names the checked host is
`kcproto.identity`'s question.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

from cryptography import x509
from cryptography.x509 import verification

from kcproto.identity import Presented

# Any one-label name is covered by a wildcard: the verdict for "*.example.com" is asked for it.
WILDCARD_STAND_IN = "keychest-wildcard-check"
_PROCESSING = re.compile(r"\s*\(encountered processing <Certificate\(.*$", re.DOTALL)


@dataclass(frozen=True)
class Anchors:
    """The trust anchors of one trust store, as cryptography's verifier stores."""

    web: verification.Store  # Mozilla's roots plus the team's own CAs
    team: verification.Store | None  # the team's own CAs alone (None without any)


def anchors(public: Sequence[x509.Certificate], team: Sequence[x509.Certificate]) -> Anchors:
    return Anchors(
        web=verification.Store([*public, *team]),
        team=verification.Store(list(team)) if team else None,
    )


@dataclass(frozen=True)
class Verdict:
    """cryptography's answer for one chain."""

    trusted: bool
    path: tuple[x509.Certificate, ...] = ()  # leaf first, anchor last, when trusted
    profile: str = ""  # "web" or "team" when trusted
    error: str = ""  # the verifier's reason when not trusted ("" when it could not be asked)


def _key_cert_sign(_policy: verification.Policy, _cert: x509.Certificate, usage: x509.KeyUsage | None) -> None:
    if usage is not None and not usage.key_cert_sign:
        raise ValueError("keyUsage.keyCertSign must be asserted in a CA certificate")


@cache
def _team_policies() -> tuple[verification.ExtensionPolicy, verification.ExtensionPolicy]:
    agnostic = verification.Criticality.AGNOSTIC
    ca = (
        verification.ExtensionPolicy.webpki_defaults_ca()
        .may_be_present(x509.KeyUsage, agnostic, _key_cert_sign)
        .may_be_present(x509.AuthorityKeyIdentifier, agnostic, None)
    )
    ee = verification.ExtensionPolicy.webpki_defaults_ee().may_be_present(x509.AuthorityKeyIdentifier, agnostic, None)
    return ca, ee


def subject_for(names: Presented) -> x509.DNSName | x509.IPAddress | None:
    """A name the leaf carries, as the verifier's subject (None when it carries none usable)."""
    import ipaddress

    for name in names.dns:
        if not name.isascii() or name.endswith(".") or not name:
            continue
        candidate = WILDCARD_STAND_IN + name[1:] if name.startswith("*.") else name
        if "*" in candidate:
            continue
        return x509.DNSName(candidate)
    for ip in names.ips:
        return x509.IPAddress(ipaddress.ip_address(ip))
    return None


def _one(
    leaf: x509.Certificate,
    intermediates: list[x509.Certificate],
    store: verification.Store,
    subject: x509.DNSName | x509.IPAddress,
    now: dt.datetime,
    team: bool,
) -> list[x509.Certificate]:
    builder = verification.PolicyBuilder().store(store).time(now)
    if team:
        ca, ee = _team_policies()
        builder = builder.extension_policies(ca_policy=ca, ee_policy=ee)
    return builder.build_server_verifier(subject).verify(leaf, intermediates)


def verify(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    trust: Anchors,
    *,
    names: Presented,
    now: dt.datetime,
) -> Verdict:
    """Whether current clients accept this chain (for a name the leaf carries)."""
    try:
        subject = subject_for(names)
    except ValueError:
        subject = None
    if subject is None:
        return Verdict(False)
    pool = list(intermediates)
    try:
        return Verdict(True, tuple(_one(leaf, pool, trust.web, subject, now, team=False)), "web")
    except (verification.VerificationError, ValueError) as exc:
        error = clean(str(exc))
    if trust.team is not None:
        try:
            return Verdict(True, tuple(_one(leaf, pool, trust.team, subject, now, team=True)), "team")
        except (verification.VerificationError, ValueError) as exc:
            team_error = clean(str(exc))
            if team_error != error:
                error = f"{error}; against the team's own CAs: {team_error}"
    return Verdict(False, error=error)


def clean(message: str) -> str:
    """The verifier's message without its Python object dump."""
    text = _PROCESSING.sub("", message)
    return text.removeprefix("validation failed: ")[:300]
