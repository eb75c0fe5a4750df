"""The fixed check sequence: from what a scan saw to findings with stable codes.

Pure (no Django): the scanner, the spot check and the tests all run the same sequence. Codes
are a public contract (API, emails, dashboard) — add new ones, never rename one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from kcproto import renewal
from kcproto.tlsprobe import LEGACY_VERSIONS, Probe
from kcproto.validation import Validation

# code -> (severity, what it means). The order is the order of the check sequence.
CODES: dict[str, tuple[str, str]] = {
    "dns_failure": ("error", "The name does not resolve"),
    "no_addresses": ("error", "The name has no usable address"),
    "target_refused": ("error", "The address is not a public address"),
    "connect_failed": ("error", "Nothing accepts connections on the port"),
    "timeout": ("error", "The server did not answer in time"),
    "not_tls": ("error", "The server does not speak TLS (or refuses STARTTLS)"),
    "tls_handshake_failed": ("error", "The TLS handshake failed"),
    "no_certificate": ("error", "The server presented no certificate"),
    "malformed_certificate": ("error", "The presented certificate cannot be parsed (or one of its extensions)"),
    "expired": ("critical", "The certificate has expired"),
    "not_yet_valid": ("error", "The certificate is not valid yet"),
    "renewal_overdue": ("error", "Less than a sixth of the certificate's lifetime is left"),
    "renewal_due": ("warning", "Less than a third of the certificate's lifetime is left"),
    "hostname_mismatch": ("error", "The certificate does not name the host"),
    "self_signed": ("error", "The certificate is self-signed"),
    "untrusted": ("error", "The chain is not trusted (no path to a trusted root, or refused by the web profile)"),
    "issuer_not_ca": ("error", "An issuing certificate is not a CA (no basicConstraints cA, or no keyCertSign)"),
    "expired_intermediate": ("error", "An intermediate or root certificate on the path is outside its validity"),
    "not_for_server_auth": ("error", "The certificate's extended key usage does not allow TLS servers"),
    "path_length_exceeded": ("error", "A CA's path length constraint is exceeded"),
    "name_constraints_violated": ("error", "The certificate names a host its CA may not issue for"),
    "incomplete_chain": ("error", "The server does not send every intermediate certificate"),
    "ca_leaf": ("error", "The server certificate has the CA flag set"),
    "weak_key": ("error", "The key is too small or of a weak type"),
    "weak_signature": ("error", "A certificate is signed with a weak hash (SHA-1, MD5)"),
    "chain_too_long": ("warning", "The server sends more certificates than any path needs"),
    "legacy_tls": ("warning", "The server also accepts TLS 1.0 or 1.1 (an error when it accepts nothing newer)"),
    "ips_disagree": ("warning", "Addresses of one name serve different certificates"),
    "certificate_changed": ("info", "A new certificate is being served"),
    "issuer_changed": ("info", "The new certificate comes from a different issuer"),
    "newer_certificate_not_deployed": ("warning", "A newer certificate exists but is not deployed"),
    "rate_limit_risk": ("warning", "The registered domain nears Let's Encrypt's weekly limit"),
    # Spot check only (kcproto/hsts.py): an HTTPS answer without Strict-Transport-Security.
    "hsts_missing": ("info", "The HTTPS answer has no Strict-Transport-Security header"),
    # KeyChest itself failed on this address (the error is logged); the rest of the scan stands.
    "scan_error": ("error", "KeyChest could not judge this address"),
}

# Error-severity codes that are advice rather than a refusal: clients still connect.
ADVISORY_ERRORS = frozenset({"renewal_overdue", "rate_limit_risk", "scan_error"})
# Codes that explain why cryptography's verifier refuses a chain (else `untrusted` says so).
_EXPLAINS_REFUSAL = frozenset(
    {
        "expired",
        "not_yet_valid",
        "self_signed",
        "untrusted",
        "issuer_not_ca",
        "expired_intermediate",
        "not_for_server_auth",
        "path_length_exceeded",
        "name_constraints_violated",
        "incomplete_chain",
        "ca_leaf",
        "weak_key",
        "weak_signature",
        "malformed_certificate",
    }
)

# Open findings that mean clients cannot use the server at all: the dashboard's "down", the
# server_down / server_recovered alerts and the servers list's status all use this one set.
DOWN_CODES = frozenset(
    {
        "dns_failure",
        "no_addresses",
        "target_refused",
        "connect_failed",
        "timeout",
        "not_tls",
        "tls_handshake_failed",
        "no_certificate",
    }
)

# Findings that describe the server as a whole rather than one address.
SERVER_LEVEL = {"dns_failure", "no_addresses", "ips_disagree", "rate_limit_risk"}
RATE_LIMIT_WARN_AT = 40


@dataclass(frozen=True)
class FindingSpec:
    """A finding before it is stored: the scanner opens, refreshes or resolves rows from these."""

    code: str
    message: str
    address: str = ""
    details: dict[str, Any] = field(default_factory=dict)
    # This finding's severity when it differs from the code's (legacy_tls on a server that speaks
    # nothing newer is an error; a certificate read but for one broken extension, a warning).
    level: str = ""

    @property
    def severity(self) -> str:
        return self.level or CODES[self.code][0]


def clients_refuse(specs: Sequence[FindingSpec]) -> bool:
    """Whether current clients (browsers, OpenSSL) refuse the connection, by these findings."""
    return any(s.severity in ("error", "critical") and s.code not in ADVISORY_ERRORS for s in specs)


def address_checks(
    probe: Probe,
    validation: Validation | None,
    *,
    host: str,
    now: datetime,
    due_fraction: float | None = None,
    overdue_fraction: float | None = None,
    ari_window: tuple[datetime, datetime] | None = None,
) -> list[FindingSpec]:
    """Steps 3-6 for one address: reachability, certificate validity, trust, strength.

    `ari_window` is the CA's suggested renewal window (RFC 9773), when known: once it opens the
    renewal is due, once it is over the renewal is overdue, whatever the lifetime rule says."""
    address = probe.address
    if probe.error_code:
        return [FindingSpec(probe.error_code, probe.error_message or CODES[probe.error_code][1], address)]
    if validation is None or validation.leaf is None:
        reason = validation.malformed if validation else "no certificate"
        return [FindingSpec("malformed_certificate", f"The certificate cannot be parsed: {reason}", address)]
    validity = validity_checks(
        validation,
        address,
        now=now,
        due_fraction=due_fraction,
        overdue_fraction=overdue_fraction,
        ari_window=ari_window,
    )
    found = validity + trust_checks(validation, address, host=host)
    codes = {spec.code for spec in found}
    if not validation.trusted and validation.verifier_error and not codes & _EXPLAINS_REFUSAL:
        message = f"Untrusted: refused by the web PKI profile: {validation.verifier_error}"
        found.append(FindingSpec("untrusted", message, address))
    return found + transport_checks(probe)


def validity_checks(
    validation: Validation,
    address: str,
    *,
    now: datetime,
    due_fraction: float | None = None,
    overdue_fraction: float | None = None,
    ari_window: tuple[datetime, datetime] | None = None,
) -> list[FindingSpec]:
    """Expired, not yet valid, renewal overdue or due (by its own lifetime or the CA's ARI window)."""
    leaf = validation.leaf
    assert leaf is not None
    state = renewal.renewal_state(
        leaf.not_before, leaf.not_after, now, due_fraction=due_fraction, overdue_fraction=overdue_fraction
    )
    expiry = {"not_after": leaf.not_after.isoformat(), "not_before": leaf.not_before.isoformat()}
    days = renewal.days_left(leaf.not_after, now)
    ari = {}
    if ari_window is not None:
        ari = {**expiry, "ari_window_start": ari_window[0].isoformat(), "ari_window_end": ari_window[1].isoformat()}
    if state == "expired":
        return [FindingSpec("expired", f"The certificate expired {abs(days):.1f} days ago", address, expiry)]
    if state == "not_yet_valid":
        message = f"The certificate is valid only from {leaf.not_before:%Y-%m-%d %H:%M} UTC"
        return [FindingSpec("not_yet_valid", message, address, expiry)]
    if ari_window is not None and now >= ari_window[1]:
        message = f"Renewal overdue: the CA's suggested renewal window (ARI) ended {ari_window[1]:%Y-%m-%d %H:%M} UTC"
        return [FindingSpec("renewal_overdue", message, address, ari)]
    if state == "overdue":
        message = f"Renewal overdue: {days:.1f} days left of {leaf.lifetime.days} days"
        return [FindingSpec("renewal_overdue", message, address, expiry)]
    if state == "due":
        message = f"Renewal due: {days:.1f} days left of {leaf.lifetime.days} days"
        return [FindingSpec("renewal_due", message, address, expiry)]
    if ari_window is not None and now >= ari_window[0]:
        message = (
            f"Renewal due: the CA suggests renewing now (ARI window {ari_window[0]:%Y-%m-%d %H:%M} to "
            f"{ari_window[1]:%Y-%m-%d %H:%M} UTC), {days:.1f} days before expiry"
        )
        return [FindingSpec("renewal_due", message, address, ari)]
    return []


def trust_checks(validation: Validation, address: str, *, host: str) -> list[FindingSpec]:
    """Host name, the chain's own reasons, CA flag on the leaf, key and signature strength, extensions."""
    out: list[FindingSpec] = []
    if not validation.hostname_ok:
        message = validation.hostname_reason or f"The certificate does not name {host}"
        out.append(FindingSpec("hostname_mismatch", message, address))
    out.extend(FindingSpec(r.code, r.message, address) for r in validation.reasons)
    if validation.ca_leaf:
        out.append(FindingSpec("ca_leaf", "The server certificate is marked as a CA certificate", address))
    if validation.weak_key:
        out.append(FindingSpec("weak_key", f"Weak key: {validation.weak_key}", address))
    if validation.weak_signature:
        out.append(FindingSpec("weak_signature", f"Weak signature: {validation.weak_signature}", address))
    if validation.extension_error:
        out.append(
            FindingSpec(
                "malformed_certificate",
                f"An extension of the certificate cannot be decoded ({validation.extension_error})",
                address,
                level="" if not validation.trusted else "warning",
            )
        )
    return out


def transport_checks(probe: Probe) -> list[FindingSpec]:
    """What the connection showed beyond the certificate: an over-long chain, TLS 1.0/1.1."""
    out: list[FindingSpec] = []
    if probe.chain_truncated:
        out.append(
            FindingSpec("chain_too_long", "The server sends more certificates than KeyChest reads", probe.address)
        )
    if probe.legacy_versions:
        versions = ", ".join(probe.legacy_versions)
        only = probe.tls_version in LEGACY_VERSIONS
        message = (
            f"The server speaks only {versions}: current browsers and OpenSSL refuse to connect"
            if only
            else f"The server also accepts {versions}"
        )
        details = {"versions": list(probe.legacy_versions)}
        out.append(FindingSpec("legacy_tls", message, probe.address, details, "error" if only else ""))
    return out


# What the second certificate of an address (the other key family) adds: its own validity,
# renewal, name, trust and strength. Connection-level codes were judged on the first handshake.
_CERTIFICATE_CODES = {
    "expired",
    "not_yet_valid",
    "renewal_due",
    "renewal_overdue",
    "hostname_mismatch",
    "self_signed",
    "untrusted",
    "issuer_not_ca",
    "expired_intermediate",
    "not_for_server_auth",
    "path_length_exceeded",
    "name_constraints_violated",
    "incomplete_chain",
    "ca_leaf",
    "weak_key",
    "weak_signature",
    "malformed_certificate",
}


def merge_alternate(primary: list[FindingSpec], alternate: list[FindingSpec], key_type: str) -> list[FindingSpec]:
    """The findings of an address serving two certificates (RSA and ECDSA side by side).

    A finding is per (code, address): when both certificates have the same problem, one finding
    names both; a problem of the second certificate alone is labelled with its key type."""
    label = "RSA" if key_type == "rsa" else "ECDSA"
    merged = list(primary)
    index = {(spec.code, spec.address): i for i, spec in enumerate(merged)}
    for spec in alternate:
        if spec.code not in _CERTIFICATE_CODES:
            continue
        text = f"{label} certificate: {spec.message}"
        at = index.get((spec.code, spec.address))
        if at is None:
            index[(spec.code, spec.address)] = len(merged)
            merged.append(
                FindingSpec(spec.code, text, spec.address, {**spec.details, "key_type": key_type}, spec.level)
            )
        else:
            first = merged[at]
            merged[at] = FindingSpec(
                first.code,
                f"{first.message}; {text}",
                first.address,
                {**first.details, "alternate": spec.details},
                _graver(first.severity, spec.severity),
            )
    return merged


_RANK = {"critical": 0, "error": 1, "warning": 2, "info": 3}


def _graver(a: str, b: str) -> str:
    return a if _RANK[a] <= _RANK[b] else b


def ips_disagree(leaf_by_address: dict[str, str]) -> FindingSpec | None:
    """One finding when the addresses of a name serve different leaf certificates."""
    served = {sha for sha in leaf_by_address.values() if sha}
    if len(served) <= 1:
        return None
    groups: dict[str, list[str]] = {}
    for address, sha in leaf_by_address.items():
        if sha:
            groups.setdefault(sha, []).append(address)
    summary = "; ".join(f"{sha[:12]} on {', '.join(sorted(addrs))}" for sha, addrs in sorted(groups.items()))
    return FindingSpec(
        "ips_disagree",
        f"{len(served)} different certificates: {summary}"[:500],
        details={"certificates": {sha: sorted(addrs) for sha, addrs in groups.items()}},
    )


DUPLICATE_WARN_AT = 4  # of Let's Encrypt's 5 per 7 days: one more renewal, then refusals


def duplicate_limit_message(names: Sequence[str], issued: int, limit: int) -> str | None:
    """The warning for a name set close to Let's Encrypt's duplicate-certificate limit, if it is."""
    if issued < min(DUPLICATE_WARN_AT, limit):
        return None
    shown = ", ".join(sorted(names)[:5]) + (" ..." if len(names) > 5 else "")
    return (
        f"{issued} of {limit} certificates for exactly the names {shown} were issued in the last 7 days "
        "(Let's Encrypt's duplicate limit): is a renewal job running too often?"
    )


def rate_limit_check(registered_domain: str, issued: int, limit: int) -> FindingSpec | None:
    if not registered_domain or issued < min(RATE_LIMIT_WARN_AT, limit):
        return None
    return FindingSpec(
        "rate_limit_risk",
        f"{issued} of {limit} certificates issued for {registered_domain} in the last 7 days",
        details={"registered_domain": registered_domain, "issued": issued, "limit": limit},
    )
