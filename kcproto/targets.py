"""Watched-server targets: host normalisation, `host[:port]` parsing, per-port protocol defaults.

Pure: no Django, so the API, the bulk form and the spot check all parse targets the same way.
"""

from __future__ import annotations

import functools
import ipaddress

import idna

from kcproto import netguard
from kcproto.names import label_is_plain, name_problem

PROTOCOLS = ("tls", "smtp", "imap", "pop3", "ftp", "ldap", "xmpp", "postgres")

# Ports whose well-known service speaks STARTTLS; every other port defaults to implicit TLS
# (including 465, 993, 995 and 636, the implicit-TLS variants of the mail and directory ports).
STARTTLS_PORT_DEFAULTS = {
    25: "smtp",
    587: "smtp",
    143: "imap",
    110: "pop3",
    21: "ftp",
    389: "ldap",
    5222: "xmpp",
    5432: "postgres",
}
# The usual port for each protocol when only a protocol is given.
PROTOCOL_PORT_DEFAULTS = {
    "tls": 443,
    "smtp": 25,
    "imap": 143,
    "pop3": 110,
    "ftp": 21,
    "ldap": 389,
    "xmpp": 5222,
    "postgres": 5432,
}

MAX_NAME = 253
MAX_LABEL = 63


class InvalidTarget(ValueError):
    """A host, port or protocol that cannot be watched; the message says why."""


def default_protocol(port: int) -> str:
    return STARTTLS_PORT_DEFAULTS.get(port, "tls")


@functools.lru_cache(maxsize=8192)  # pure, and IDNA is slow: scripts ask about the same names
def normalise_host(text: str) -> str:
    """Lower-case, no trailing dot, IDNA 2008 A-labels, length limits; IP literals canonical.

    Raises InvalidTarget for anything that is neither a host name nor an IP address.
    """
    raw = (text or "").strip()
    if raw.startswith("[") and raw.endswith("]"):
        raw = raw[1:-1]
    if not raw:
        raise InvalidTarget("empty host")
    try:
        return str(ipaddress.ip_address(raw))
    except ValueError:
        pass
    # Encoded address forms (127.1, 0x7f.0.0.1, 2130706433) are addresses, as resolvers read them.
    literal = netguard.parse_ip_literal(raw)
    if literal is not None:
        return str(literal)
    name = raw.rstrip(".").lower() if raw != "." else ""
    if not name:
        raise InvalidTarget("empty host")
    if "*" in name:
        raise InvalidTarget("a wildcard is not a server; watch the domain instead")
    if all(label_is_plain(label) for label in name.split(".")):
        ascii_name = name  # what the IDNA codec would return, at a fraction of its cost
    else:
        try:
            ascii_name = idna.encode(name, uts46=True, transitional=False).decode("ascii")
        except idna.IDNAError:
            # Underscore labels (e.g. _dmarc) are not host names; the idna package refuses them too.
            raise InvalidTarget(name_problem(name)) from None
    if len(ascii_name) > MAX_NAME:
        raise InvalidTarget("a host name has at most 253 characters")
    labels = ascii_name.split(".")
    if any(not label or len(label) > MAX_LABEL for label in labels):
        raise InvalidTarget("each dot-separated part of a host name has 1 to 63 characters")
    if labels[-1].isdigit():
        # "1.2.3" or "127.1": resolvers would read it as an address; refuse the ambiguity.
        raise InvalidTarget(f"“{name[:80]}” looks like an incomplete IP address; enter all four numbers or a name")
    return ascii_name


# Names that never resolve on the internet (RFC 6761 localhost, RFC 6762 .local, RFC 8375
# .home.arpa, and .internal, reserved for private use by ICANN in 2024).
_LOCAL_SUFFIXES = ("localhost", "local", "home.arpa", "internal")


def non_public_reason(host: str) -> str | None:
    """Why a normalised host can never be reached from the internet, or None (a name may still
    resolve to private addresses; only the scan can tell). Reasons are netguard.classify's,
    plus "local_name" for the names above."""
    literal = netguard.parse_ip_literal(host)
    if literal is not None:
        return netguard.classify(literal)
    if host == "localhost" or host.endswith(".localhost"):
        return "loopback"
    if any(host == suffix or host.endswith("." + suffix) for suffix in _LOCAL_SUFFIXES):
        return "local_name"
    return None


def url_host(text: str) -> str:
    """The `host[:port]` of a URL someone pasted ("https://x.example/path" -> "x.example"), or
    the text itself when it is no URL."""
    raw = (text or "").strip()
    if "://" in raw:
        raw = raw.partition("://")[2]
    return raw.split("/", 1)[0].split("?", 1)[0].split("#", 1)[0]


def domain_from_input(text: str) -> str:
    """A domain as people paste it: a URL or `name:port` gives its name, as Servers reads it."""
    host = url_host(text)
    if host.count(":") == 1 and not host.startswith("["):
        host = host.split(":", 1)[0]
    return host


def parse_port(text: str | int) -> int:
    try:
        port = int(str(text).strip())
    except ValueError:
        raise InvalidTarget(f"port {text!r} is not a number") from None
    if not 0 < port < 65536:
        raise InvalidTarget(f"port {port} is out of range 1-65535")
    return port


def parse_protocol(text: str | None, port: int) -> str:
    if not text:
        return default_protocol(port)
    protocol = text.strip().lower()
    if protocol in ("https", "implicit", "ssl"):
        protocol = "tls"
    if protocol not in PROTOCOLS:
        raise InvalidTarget(f"unknown protocol {text!r} (one of {', '.join(PROTOCOLS)})")
    return protocol


def parse_target(text: str, *, default_port: int | None = None) -> tuple[str, int | None]:
    """`host`, `host:port`, `[v6]:port`, a bare IPv6 address, or a URL -> (host, port or None)."""
    raw = (text or "").strip()
    if "://" in raw:
        scheme, _, rest = raw.partition("://")
        raw = rest.split("/", 1)[0]
        if default_port is None and scheme.lower() == "https":
            default_port = 443
    else:
        raw = raw.split("/", 1)[0]
    if "@" in raw:
        raise InvalidTarget("user information is not part of a server address")
    port: int | None = default_port
    if raw.startswith("["):
        host, _, rest = raw[1:].partition("]")
        if rest:
            if not rest.startswith(":"):
                raise InvalidTarget(f"cannot read {text!r}")
            port = parse_port(rest[1:])
    elif raw.count(":") == 1:
        host, port_text = raw.split(":")
        port = parse_port(port_text)
    else:
        host = raw  # a bare IPv6 address has many colons and no port
    return normalise_host(host), port
