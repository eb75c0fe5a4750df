"""HSTS in the spot check: one bounded `HEAD /` over TLS to the address already checked.

A second, short connection after the certificate probe (the probe's memory-BIO handshake is
built to read certificates, not to carry HTTP). It goes to exactly the checked address through
`kcproto.netguard`, with one deadline and a byte cap on the response head, and never follows
redirects: only the first answer's `Strict-Transport-Security` header counts (RFC 6797 §8.1).
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import asdict, dataclass
from typing import Any

from kcproto import netguard

# Implicit-TLS ports where HTTPS is the expected service; other ports are checked on request.
HTTP_PORTS = frozenset({443, 8443})
DEADLINE_SECONDS = 3.0
MAX_HEAD_BYTES = 16 * 1024


@dataclass
class Hsts:
    """What the server said. `error` is set (and the rest empty) when no HTTP head came back."""

    checked: bool = True
    error: str = ""
    status: int | None = None
    present: bool = False
    max_age: int | None = None
    include_subdomains: bool = False
    preload: bool = False
    header: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def parse_header(value: str) -> tuple[int | None, bool, bool]:
    """(max-age, includeSubDomains, preload) of one header value; max-age None when unreadable."""
    max_age: int | None = None
    include_subdomains = preload = False
    for directive in value.split(";"):
        name, _, argument = directive.strip().partition("=")
        name = name.strip().lower()
        argument = argument.strip().strip('"')
        if name == "max-age" and argument.isdigit() and len(argument) <= 12:
            max_age = int(argument)
        elif name == "includesubdomains":
            include_subdomains = True
        elif name == "preload":
            preload = True
    return max_age, include_subdomains, preload


def parse_head(head: bytes) -> Hsts:
    """The status line and the first Strict-Transport-Security header of a response head."""
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/") or not parts[1].isdigit() or len(parts[1]) != 3:
        return Hsts(error="not_http")
    result = Hsts(status=int(parts[1]))
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() == "strict-transport-security":
            result.present = True
            result.header = value.strip()[:500]
            result.max_age, result.include_subdomains, result.preload = parse_header(value)
            break
    return result


def _host_header(host: str, port: int) -> str:
    shown = f"[{host}]" if ":" in host else host
    return shown if port == 443 else f"{shown}:{port}"


async def _head(address: str, port: int, *, host: str, allow_private: bool, max_bytes: int, timeout: float) -> bytes:
    sock = await netguard.connect_socket_async(address, port, timeout=timeout, allow_private=allow_private)
    context = ssl.create_default_context()
    # The certificate was judged by the probe; here only the header matters, whatever the chain.
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    is_ip = netguard.parse_ip_literal(host) is not None
    reader, writer = await asyncio.open_connection(
        sock=sock, ssl=context, server_hostname=None if is_ip else host, limit=max_bytes + 1
    )
    try:
        request = f"HEAD / HTTP/1.1\r\nHost: {_host_header(host, port)}\r\nUser-Agent: KeyChest\r\nAccept: */*\r\nConnection: close\r\n\r\n"
        writer.write(request.encode("ascii"))
        await writer.drain()
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = await reader.read(4096)
            if not chunk:
                break
            head += chunk
            if len(head) > max_bytes:
                raise OverflowError
        return head.split(b"\r\n\r\n", 1)[0]
    finally:
        writer.close()


async def hsts_check(
    address: str,
    port: int,
    *,
    host: str,
    allow_private: bool,
    deadline_seconds: float = DEADLINE_SECONDS,
    max_bytes: int = MAX_HEAD_BYTES,
) -> Hsts:
    """Send `HEAD /` to `address` (already checked) and read the HSTS header, within the caps."""
    try:
        head = await asyncio.wait_for(
            _head(address, port, host=host, allow_private=allow_private, max_bytes=max_bytes, timeout=deadline_seconds),
            deadline_seconds,
        )
    except TimeoutError:
        return Hsts(error="timeout")
    except OverflowError:
        return Hsts(error="too_large")
    except netguard.TargetRefused:
        return Hsts(error="target_refused")
    except (OSError, ssl.SSLError, EOFError):
        return Hsts(error="connect_failed")
    if not head:
        return Hsts(error="no_answer")
    return parse_head(head)
