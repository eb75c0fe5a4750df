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
from kcproto.tlsprobe import Probe
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
    "malformed_certificate": ("error", "The presented certificate cannot be parsed"),
    "expired": ("critical", "The certificate has expired"),
    "not_yet_valid": ("error", "The certificate is not valid yet"),
    "renewal_overdue": ("error", "Less than a sixth of the certificate's lifetime is left"),
    "renewal_due": ("warning", "Less than a third of the certificate's lifetime is left"),
    "hostname_mismatch": ("error", "The certificate does not name the host"),
    "self_signed": ("error", "The certificate is self-signed"),
    "untrusted": ("error", "No path to a trusted root"),
    "incomplete_chain": ("warning", "The server does not send every intermediate certificate"),
    "ca_leaf": ("warning", "The server certificate has the CA flag set"),
    "weak_key": ("warning", "The key is too small or of a weak type"),
    "weak_signature": ("warning", "A certificate is signed with a weak hash (SHA-1, MD5)"),
    "chain_too_long": ("warning", "The server sends more certificates than any path needs"),
    "legacy_tls": ("warning", "The server also accepts TLS 1.0 or 1.1"),
    "ips_disagree": ("warning", "Addresses of one name serve different certificates"),
    "certificate_changed": ("info", "A new certificate is being served"),
    "issuer_changed": ("info", "The new certificate comes from a different issuer"),
    "newer_certificate_not_deployed": ("warning", "A newer certificate exists but is not deployed"),
    "rate_limit_risk": ("warning", "The registered domain nears Let's Encrypt's weekly limit"),
    # Spot check only (kcproto/hsts.py): an HTTPS answer without Strict-Transport-Security.
    "hsts_missing": ("info", "The HTTPS answer has no Strict-Transport-Security header"),
}

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

    @property
    def severity(self) -> str:
        return CODES[self.code][0]


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
    out: list[FindingSpec] = []
    if validation is None or validation.leaf is None:
        reason = validation.malformed if validation else "no certificate"
        return [FindingSpec("malformed_certificate", f"The certificate cannot be parsed: {reason}", address)]
    leaf = validation.leaf
    state = renewal.renewal_state(
        leaf.not_before, leaf.not_after, now, due_fraction=due_fraction, overdue_fraction=overdue_fraction
    )
    expiry = {"not_after": leaf.not_after.isoformat(), "not_before": leaf.not_before.isoformat()}
    days = renewal.days_left(leaf.not_after, now)
    if state == "expired":
        out.append(FindingSpec("expired", f"The certificate expired {abs(days):.1f} days ago", address, expiry))
    elif state == "not_yet_valid":
        out.append(
            FindingSpec(
                "not_yet_valid",
                f"The certificate is valid only from {leaf.not_before:%Y-%m-%d %H:%M} UTC",
                address,
                expiry,
            )
        )
    elif ari_window is not None and now >= ari_window[1]:
        out.append(
            FindingSpec(
                "renewal_overdue",
                f"Renewal overdue: the CA's suggested renewal window (ARI) ended {ari_window[1]:%Y-%m-%d %H:%M} UTC",
                address,
                {**expiry, "ari_window_start": ari_window[0].isoformat(), "ari_window_end": ari_window[1].isoformat()},
            )
        )
    elif state == "overdue":
        out.append(
            FindingSpec(
                "renewal_overdue",
                f"Renewal overdue: {days:.1f} days left of {leaf.lifetime.days} days",
                address,
                expiry,
            )
        )
    elif state == "due":
        out.append(
            FindingSpec(
                "renewal_due", f"Renewal due: {days:.1f} days left of {leaf.lifetime.days} days", address, expiry
            )
        )
    elif ari_window is not None and now >= ari_window[0]:
        out.append(
            FindingSpec(
                "renewal_due",
                f"Renewal due: the CA suggests renewing now (ARI window {ari_window[0]:%Y-%m-%d %H:%M} to "
                f"{ari_window[1]:%Y-%m-%d %H:%M} UTC), {days:.1f} days before expiry",
                address,
                {**expiry, "ari_window_start": ari_window[0].isoformat(), "ari_window_end": ari_window[1].isoformat()},
            )
        )
    if not validation.hostname_ok:
        names = ", ".join((leaf.names + leaf.ip_addresses)[:10]) or "no names"
        out.append(FindingSpec("hostname_mismatch", f"The certificate names {names}, not {host}", address))
    if validation.self_signed:
        out.append(FindingSpec("self_signed", "The certificate is self-signed", address))
    elif not validation.trusted and not validation.incomplete_chain:
        out.append(FindingSpec("untrusted", f"Untrusted: {validation.untrusted_reason}", address))
    if validation.incomplete_chain:
        if not validation.trusted and validation.untrusted_reason:
            out.append(FindingSpec("untrusted", f"Untrusted: {validation.untrusted_reason}", address))
        out.append(FindingSpec("incomplete_chain", "The server does not send the intermediate certificate(s)", address))
    if validation.ca_leaf:
        out.append(FindingSpec("ca_leaf", "The server certificate is marked as a CA certificate", address))
    if validation.weak_key:
        out.append(FindingSpec("weak_key", f"Weak key: {validation.weak_key}", address))
    if validation.weak_signature:
        out.append(FindingSpec("weak_signature", f"Weak signature: {validation.weak_signature}", address))
    if probe.chain_truncated:
        out.append(FindingSpec("chain_too_long", "The server sends more certificates than KeyChest reads", address))
    if probe.legacy_versions:
        versions = ", ".join(v.replace("TLSv", "TLS ") for v in probe.legacy_versions)
        out.append(FindingSpec("legacy_tls", f"The server accepts {versions}", address))
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
    "incomplete_chain",
    "ca_leaf",
    "weak_key",
    "weak_signature",
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
            merged.append(FindingSpec(spec.code, text, spec.address, {**spec.details, "key_type": key_type}))
        else:
            first = merged[at]
            merged[at] = FindingSpec(
                first.code, f"{first.message}; {text}", first.address, {**first.details, "alternate": spec.details}
            )
    return merged


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
