"""Address safety for outbound connections (scanner, webhooks): no Django in here.

KeyChest connects to hosts its users name. Without care that is a server-side request forgery
tool: a user could make our workers talk to the cloud metadata service, to Redis on loopback or
to the office network. So every outbound connection goes through three steps:

1. `parse_ip_literal` recognises every spelling an OS resolver would accept as an address
   (``127.1``, ``2130706433``, ``0x7f.0.0.1``, ``0177.0.0.1``, ``[::1]``, ``fe80::1%eth0``),
   so an "encoded" address can never slip past as a host name.
2. `resolve` looks the name up once, within a time budget, and returns only the addresses that
   pass `classify` (the refused ones are reported with a reason).
3. `connect` / `open_connection` connect to exactly one of those checked addresses (never to
   the name again, so a DNS answer that changes between check and use — rebinding — has no
   effect) and verify the peer address the kernel actually connected to.

Call sites pass ``allow_private`` from ``settings.KEYCHEST_ALLOW_PRIVATE_TARGETS``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

_V4 = ipaddress.IPv4Network
_V6 = ipaddress.IPv6Network

# Checked in order; the first match gives the reason. Cloud metadata first, so that
# 169.254.169.254 says "metadata" rather than the more generic "link_local".
_V4_RULES: list[tuple[_V4, str]] = [
    (_V4("169.254.169.254/32"), "metadata"),  # AWS, GCP, Azure, OpenStack, DigitalOcean...
    (_V4("168.63.129.16/32"), "metadata"),  # Azure wire server (public space, host-local use)
    (_V4("100.100.100.200/32"), "metadata"),  # Alibaba Cloud
    (_V4("0.0.0.0/8"), "unspecified"),
    (_V4("10.0.0.0/8"), "private"),
    (_V4("100.64.0.0/10"), "cgnat"),
    (_V4("127.0.0.0/8"), "loopback"),
    (_V4("169.254.0.0/16"), "link_local"),
    (_V4("172.16.0.0/12"), "private"),
    (_V4("192.0.0.0/24"), "reserved"),  # IETF protocol assignments
    (_V4("192.0.2.0/24"), "documentation"),
    (_V4("192.88.99.0/24"), "reserved"),  # deprecated 6to4 relay anycast
    (_V4("192.168.0.0/16"), "private"),
    (_V4("198.18.0.0/15"), "benchmarking"),
    (_V4("198.51.100.0/24"), "documentation"),
    (_V4("203.0.113.0/24"), "documentation"),
    (_V4("224.0.0.0/4"), "multicast"),
    (_V4("240.0.0.0/4"), "reserved"),  # includes 255.255.255.255
]

_V6_RULES: list[tuple[_V6, str]] = [
    (_V6("fd00:ec2::254/128"), "metadata"),  # AWS IMDS over IPv6
    (_V6("::/128"), "unspecified"),
    (_V6("::1/128"), "loopback"),
    # Local-use NAT64 (RFC 8215) is never globally routed, whatever it embeds.
    (_V6("64:ff9b:1::/48"), "nat64_local"),
    (_V6("100::/64"), "reserved"),  # discard-only
    (_V6("2001:db8::/32"), "documentation"),
    (_V6("3fff::/20"), "documentation"),
    (_V6("2001:2::/48"), "benchmarking"),
    (_V6("fc00::/7"), "unique_local"),
    (_V6("fe80::/10"), "link_local"),
    (_V6("fec0::/10"), "site_local"),
    (_V6("ff00::/8"), "multicast"),
    (_V6("5f00::/16"), "reserved"),  # SRv6 SIDs
]
_V6_IETF = _V6("2001::/23")
_V6_TEREDO = _V6("2001::/32")
_V6_6TO4 = _V6("2002::/16")
_V6_NAT64 = _V6("64:ff9b::/96")
_V6_MAPPED = _V6("::ffff:0:0/96")
_V6_COMPAT = _V6("::/96")
_V6_GLOBAL_UNICAST = _V6("2000::/3")


class TargetRefused(Exception):
    """The address is not a public one (and private targets are not allowed)."""

    def __init__(self, address: str, reason: str) -> None:
        super().__init__(f"{address} is not a public address ({reason})")
        self.address = address
        self.reason = reason


class ResolutionFailed(Exception):
    """The name could not be resolved (NXDOMAIN, no answer, timeout, bad name)."""

    def __init__(self, host: str, reason: str) -> None:
        super().__init__(f"cannot resolve {host}: {reason}")
        self.host = host
        self.reason = reason


def _parse_ipv4_part(part: str) -> int | None:
    """One dotted part as inet_aton reads it: decimal, 0x-hex or 0-prefixed octal."""
    if not part:
        return None
    lowered = part.lower()
    try:
        if lowered.startswith("0x"):
            return int(lowered[2:], 16) if lowered[2:] else 0
        if len(lowered) > 1 and lowered.startswith("0"):
            return int(lowered[1:], 8)
        if lowered.isdigit():
            return int(lowered, 10)
    except ValueError:
        return None
    return None


def _parse_legacy_ipv4(text: str) -> ipaddress.IPv4Address | None:
    """The inet_aton forms: a, a.b, a.b.c, a.b.c.d with each part decimal, octal or hex."""
    parts = text.split(".")
    if not 1 <= len(parts) <= 4:
        return None
    values = [_parse_ipv4_part(p) for p in parts]
    if any(v is None for v in values):
        return None
    nums = [v for v in values if v is not None]
    # The last part fills all remaining bytes (so "127.1" is 127.0.0.1).
    last_bits = 8 * (5 - len(nums))
    if any(n > 255 for n in nums[:-1]) or nums[-1] >= 1 << last_bits:
        return None
    value = 0
    for n in nums[:-1]:
        value = (value << 8) | n
    value = (value << last_bits) | nums[-1]
    return ipaddress.IPv4Address(value)


_HEXISH = re.compile(r"^[0-9a-fA-FxX.]+$")


def parse_ip_literal(text: str) -> IPAddress | None:
    """The address `text` spells, in any form a resolver would take as an address; else None."""
    candidate = text.strip()
    if candidate.startswith("[") and candidate.endswith("]"):
        candidate = candidate[1:-1]
    if "%" in candidate:  # IPv6 zone id ("fe80::1%eth0"); the zone does not change the class
        candidate = candidate.split("%", 1)[0]
    candidate = candidate.removesuffix(".")
    if not candidate:
        return None
    try:
        return ipaddress.ip_address(candidate)
    except ValueError:
        pass
    if _HEXISH.match(candidate):
        return _parse_legacy_ipv4(candidate)
    return None


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """IPv4 addresses an IPv6 address reaches through translation or tunnelling."""
    if ip.ipv4_mapped is not None:
        return [ip.ipv4_mapped]
    if ip in _V6_NAT64 or (ip in _V6_COMPAT and int(ip) > 1):
        return [ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)]
    if ip in _V6_6TO4 and ip.sixtofour is not None:
        return [ip.sixtofour]
    if ip in _V6_TEREDO and ip.teredo is not None:
        server, client = ip.teredo
        return [server, client]
    return []


def classify(ip: IPAddress | str) -> str | None:
    """Why `ip` is not a public address ("loopback", "private", "metadata", ...), or None."""
    if isinstance(ip, str):
        parsed = parse_ip_literal(ip)
        if parsed is None:
            return "not_an_address"
        ip = parsed
    if isinstance(ip, ipaddress.IPv4Address):
        for network4, reason4 in _V4_RULES:
            if ip in network4:
                return reason4
        return None
    ip = ipaddress.IPv6Address(int(ip))  # drop any scope id
    for network6, reason6 in _V6_RULES:
        if ip in network6:
            return reason6
    embedded = _embedded_ipv4(ip)
    if embedded:
        for inner in embedded:
            inner_reason = classify(inner)
            if inner_reason is not None:
                return f"embedded_{inner_reason}"
        return None
    if ip in _V6_IETF:
        return "reserved"
    if ip in _V6_COMPAT or ip in _V6_MAPPED:
        return "reserved"
    if ip not in _V6_GLOBAL_UNICAST:
        return "reserved"
    return None


def network_refusal(network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> str | None:
    """Why some address of `network` is not public ("private", "loopback", ...), or None."""
    rules: Sequence[tuple[_V4 | _V6, str]] = _V4_RULES if network.version == 4 else _V6_RULES
    for rule, reason in rules:
        if network.overlaps(rule):  # type: ignore[arg-type]
            return reason
    if isinstance(network, ipaddress.IPv6Network) and not network.subnet_of(_V6_GLOBAL_UNICAST):
        return "reserved"
    return classify(network.network_address) or classify(network.broadcast_address)


def is_public(ip: IPAddress | str) -> bool:
    return classify(ip) is None


def check_address(ip: IPAddress | str, *, allow_private: bool) -> IPAddress:
    """The parsed address, or TargetRefused when it is not public and private ones are off."""
    parsed = parse_ip_literal(ip) if isinstance(ip, str) else ip
    if parsed is None:
        raise TargetRefused(str(ip), "not_an_address")
    if not allow_private:
        reason = classify(parsed)
        if reason is not None:
            raise TargetRefused(str(parsed), reason)
    return parsed


@dataclass
class Resolution:
    """What one look-up gave: the addresses safe to use and those refused, with reasons."""

    host: str
    addresses: list[IPAddress] = field(default_factory=list)
    refused: list[tuple[str, str]] = field(default_factory=list)
    # Set when the look-up itself failed (NXDOMAIN, timeout...) for every record type.
    error: str = ""


def parse_nameservers(spec: Sequence[str] | str | None) -> list[tuple[str, int]]:
    """`KEYCHEST_DNS_NAMESERVERS` entries (`ip`, `ip:port`, `[v6]:port`) as (ip, port)."""
    if not spec:
        return []
    items = spec.split(",") if isinstance(spec, str) else list(spec)
    servers: list[tuple[str, int]] = []
    for raw in items:
        item = raw.strip()
        if not item:
            continue
        port = 53
        if item.startswith("["):
            host, _, rest = item[1:].partition("]")
            if rest.startswith(":"):
                port = int(rest[1:])
        elif item.count(":") == 1:
            host, port_text = item.split(":")
            port = int(port_text)
        else:
            host = item
        ipaddress.ip_address(host)  # a name server is always an address; fail loudly otherwise
        if not 0 < port < 65536:
            raise ValueError(f"bad name server port in {item!r}")
        servers.append((host, port))
    return servers


def _resolver(nameservers: Sequence[tuple[str, int]] | None, timeout: float, *, asynchronous: bool = False):  # type: ignore[no-untyped-def]
    import dns.asyncresolver
    import dns.resolver

    if nameservers:
        cls = dns.asyncresolver.Resolver if asynchronous else dns.resolver.Resolver
        resolver = cls(configure=False)
        resolver.nameservers = [host for host, _ in nameservers]
        resolver.nameserver_ports = dict(nameservers)
        resolver.port = nameservers[0][1]
    else:
        resolver = dns.asyncresolver.Resolver() if asynchronous else dns.resolver.Resolver()
    resolver.lifetime = timeout
    resolver.timeout = min(timeout, 2.0)
    resolver.cache = None
    return resolver


def dns_resolver(nameservers: Sequence[tuple[str, int]] | None, timeout: float):  # type: ignore[no-untyped-def]
    """A dnspython resolver for other record types (CAA, ...): the configured servers, bounded, no cache."""
    return _resolver(nameservers, timeout)


def _special_name(host: str) -> list[IPAddress] | None:
    """Names that never go to DNS: address literals and `localhost` (RFC 6761)."""
    literal = parse_ip_literal(host)
    if literal is not None:
        return [literal]
    name = host.lower().rstrip(".")
    if name == "localhost" or name.endswith(".localhost"):
        return [ipaddress.IPv4Address("127.0.0.1"), ipaddress.IPv6Address("::1")]
    return None


def _sort_filter(resolution: Resolution, found: list[IPAddress], allow_private: bool) -> Resolution:
    seen: set[IPAddress] = set()
    for ip in found:
        if ip in seen:
            continue
        seen.add(ip)
        reason = None if allow_private else classify(ip)
        if reason is None:
            resolution.addresses.append(ip)
        else:
            resolution.refused.append((str(ip), reason))
    # IPv4 first, then IPv6, each in numeric order: stable results compare equal across scans.
    resolution.addresses.sort(key=lambda a: (a.version, int(a)))
    return resolution


def _answers_to_ips(answer) -> list[IPAddress]:  # type: ignore[no-untyped-def]
    out: list[IPAddress] = []
    for rr in answer:
        try:
            out.append(ipaddress.ip_address(rr.address))
        except (AttributeError, ValueError):
            continue
    return out


def _dns_errors() -> tuple[type[BaseException], ...]:
    import dns.exception

    # dnspython raises many kinds; all mean "no usable answer". Bad names raise ValueError.
    return (dns.exception.DNSException, OSError, ValueError, UnicodeError)


_DNS_ERRORS = _dns_errors()


def _dns_error(exc: BaseException) -> str:
    import dns.exception
    import dns.resolver

    if isinstance(exc, dns.resolver.NXDOMAIN):
        return "nxdomain"
    if isinstance(exc, dns.resolver.NoAnswer):
        return "no_answer"
    if isinstance(exc, dns.exception.Timeout | dns.resolver.LifetimeTimeout):
        return "timeout"
    if isinstance(exc, dns.resolver.NoNameservers):
        return "servfail"
    return type(exc).__name__


def resolve(
    host: str,
    *,
    allow_private: bool,
    timeout: float = 5.0,
    nameservers: Sequence[tuple[str, int]] | None = None,
) -> Resolution:
    """A and AAAA of `host`, once, within `timeout` seconds in all; only checked addresses returned."""
    resolution = Resolution(host=host)
    special = _special_name(host)
    if special is not None:
        return _sort_filter(resolution, special, allow_private)
    resolver = _resolver(nameservers, timeout)
    deadline = time.monotonic() + timeout
    found: list[IPAddress] = []
    errors: list[str] = []
    for rdtype in ("A", "AAAA"):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            errors.append("timeout")
            break
        try:
            found.extend(_answers_to_ips(resolver.resolve(host, rdtype, lifetime=remaining, search=False)))
        except _DNS_ERRORS as exc:
            errors.append(_dns_error(exc))
    if not found and errors:
        resolution.error = "nxdomain" if "nxdomain" in errors else errors[0]
        if set(errors) == {"no_answer"}:
            resolution.error = "no_answer"
    return _sort_filter(resolution, found, allow_private)


async def resolve_async(
    host: str,
    *,
    allow_private: bool,
    timeout: float = 5.0,
    nameservers: Sequence[tuple[str, int]] | None = None,
) -> Resolution:
    """`resolve` for asyncio: A and AAAA in parallel under one overall budget."""
    resolution = Resolution(host=host)
    special = _special_name(host)
    if special is not None:
        return _sort_filter(resolution, special, allow_private)
    resolver = _resolver(nameservers, timeout, asynchronous=True)

    async def one(rdtype: str) -> list[IPAddress] | str:
        try:
            return _answers_to_ips(await resolver.resolve(host, rdtype, lifetime=timeout, search=False))
        except _DNS_ERRORS as exc:
            return _dns_error(exc)

    try:
        results = await asyncio.wait_for(asyncio.gather(one("A"), one("AAAA")), timeout + 0.5)
    except TimeoutError:
        resolution.error = "timeout"
        return resolution
    found = [ip for r in results if isinstance(r, list) for ip in r]
    errors = [r for r in results if isinstance(r, str)]
    if not found and errors:
        resolution.error = "nxdomain" if "nxdomain" in errors else errors[0]
    return _sort_filter(resolution, found, allow_private)


def _verify_peer(sock: socket.socket, expected: IPAddress) -> None:
    peer = sock.getpeername()[0]
    actual = parse_ip_literal(peer)
    if actual is None or int(actual) != int(expected) or actual.version != expected.version:
        raise TargetRefused(str(peer), "peer_mismatch")


def connect(address: IPAddress | str, port: int, *, timeout: float, allow_private: bool) -> socket.socket:
    """A TCP connection to exactly `address` (checked again here), peer address verified."""
    ip = check_address(address, allow_private=allow_private)
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.settimeout(timeout)
        sock.connect((str(ip), port))
        _verify_peer(sock, ip)
    except BaseException:
        sock.close()
        raise
    return sock


async def open_connection(
    address: IPAddress | str, port: int, *, timeout: float, allow_private: bool
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """`connect` for asyncio streams."""
    ip = check_address(address, allow_private=allow_private)
    reader, writer = await asyncio.wait_for(asyncio.open_connection(str(ip), port), timeout)
    sock = writer.get_extra_info("socket")
    try:
        _verify_peer(sock, ip)
    except TargetRefused:
        writer.close()
        raise
    return reader, writer


async def connect_socket_async(
    address: IPAddress | str, port: int, *, timeout: float, allow_private: bool
) -> socket.socket:
    """A connected non-blocking socket to exactly `address`, for protocols driven by hand."""
    ip = check_address(address, allow_private=allow_private)
    family = socket.AF_INET if ip.version == 4 else socket.AF_INET6
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(asyncio.get_running_loop().sock_connect(sock, (str(ip), port)), timeout)
        _verify_peer(sock, ip)
    except BaseException:
        sock.close()
        raise
    return sock
