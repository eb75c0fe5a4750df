"""Does a certificate name the host? Service identity as clients check it today (RFC 9525). Pure.

- Only the subjectAltName counts: dNSName entries for a host name, iPAddress entries for an IP
  address. The subject CN is never used: browsers stopped falling back to it in 2017 and RFC 9525
  (§6.3) forbids it, so a certificate without a SAN names no host at all.
- A dNSName is compared with the host (lower-case A-labels, as KeyChest stores hosts) ASCII
  case-insensitively, as written: a trailing dot is not stripped (OpenSSL, cryptography and
  browsers do not match "example.com." to "example.com"), non-ASCII text matches nothing.
- A wildcard is only a whole left-most label ("*.example.com"): it covers exactly one non-empty
  label, needs at least two labels after it, and never covers an IP address. Partial wildcards
  ("w*.example.com") match nothing.

`tests/kcproto/test_identity.py` checks these rules against cryptography's own verifier.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass

MAX_NAMES = 1000  # names compared per certificate (the parser keeps at most this many anyway)


@dataclass(frozen=True)
class Presented:
    """What a certificate presents as its identity (raw, as the SAN says it)."""

    dns: tuple[str, ...] = ()  # dNSName values as written
    ips: tuple[str, ...] = ()  # iPAddress values, canonical text
    has_san: bool = False
    common_names: tuple[str, ...] = ()  # for the explanation only: never matched


def _ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def dns_name_matches(presented: str, host: str) -> bool:
    """Whether one presented dNSName covers `host` (lower-case A-labels, no trailing dot)."""
    if not presented.isascii():
        return False
    pattern = presented.lower()
    if pattern == host:
        return True
    if not pattern.startswith("*.") or "*" in pattern[2:]:
        return False
    rest = pattern[2:]
    if "." not in rest or not rest or rest.endswith("."):
        return False
    head, _, tail = host.partition(".")
    return bool(head) and tail == rest and _ip(host) is None


def matches(host: str, presented: Presented) -> bool:
    """Whether `presented` names `host` (a host name or an IP address)."""
    address = _ip(host)
    if address is not None:
        return any(_ip(ip) == address for ip in presented.ips[:MAX_NAMES])
    return any(dns_name_matches(name, host) for name in presented.dns[:MAX_NAMES])


def mismatch_reason(host: str, presented: Presented) -> str:
    """Why `presented` does not name `host`, in words a user can act on ("" if it does)."""
    if matches(host, presented):
        return ""
    if not presented.has_san:
        cn = next((c for c in presented.common_names if c.lower().rstrip(".") == host), "")
        also = f" (its subject CN {cn} names the host, but" if cn else " (a name in the subject CN"
        return (
            f"The certificate has no subjectAltName, so it names no host{also} is ignored by "
            "browsers since 2017 and by RFC 9525)"
        )
    address = _ip(host)
    if address is not None:
        if any(name == host for name in presented.dns):
            return (
                f"The certificate names {host} as a DNS name, not as an IP address (iPAddress): clients do not match it"
            )
        return f"The certificate names {_shown(presented)}, not the address {host}"
    if any(name.lower() == host + "." for name in presented.dns if name.isascii()):
        return f"The certificate names {host}. with a trailing dot, which clients do not match to {host}"
    _, _, tail = host.partition(".")
    for name in presented.dns:
        lowered = name.lower() if name.isascii() else ""
        if lowered.startswith("*.") and tail.endswith("." + lowered[2:]):
            return f"The certificate names {name}, whose wildcard covers one label only, not {host}"
        if "*" in lowered and not lowered.startswith("*."):
            return f"The certificate names {name}: a wildcard that is not a whole left-most label matches nothing"
    return f"The certificate names {_shown(presented)}, not {host}"


def _shown(presented: Presented) -> str:
    names: Sequence[str] = [*presented.dns, *presented.ips]
    return ", ".join(names[:10]) + (" ..." if len(names) > 10 else "") if names else "no names"
