"""HTTP to user- or remote-named URLs safely through `keychest.netguard`: resolve once, refuse
non-public targets, connect to the checked address (so DNS rebinding cannot swap it), time out,
read a bounded number of bytes. Webhooks POST with it; ARI (certificates/ari.py) GETs with it.

No Django imports: the caller passes whether private targets are allowed.
"""

from __future__ import annotations

import http.client
import socket
import ssl
from dataclasses import dataclass
from urllib.parse import urlsplit

from keychest import netguard


class TargetRefused(Exception):
    """The URL is malformed or points at an address we must not connect to (permanent)."""


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: str
    headers: dict[str, str] | None = None


def resolve_target(url: str, *, allow_private: bool, timeout: float = 5.0) -> tuple[str, int, str, str, str]:
    """(scheme, port, host, checked address, path) for an http(s) URL, or TargetRefused."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("only http:// and https:// URLs with a host name are allowed")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed")
    host = parts.hostname
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise TargetRefused("invalid port") from None
    resolution = netguard.resolve(host, allow_private=allow_private, timeout=timeout)
    if resolution.refused:
        # Every address must be public: otherwise an attacker's name could point half its
        # records at the internal network and wait for the connection that lands there.
        address, reason = resolution.refused[0]
        raise TargetRefused(f"{host} resolves to a non-public address ({address}: {reason})")
    if not resolution.addresses:
        raise ConnectionError(f"cannot resolve {host}: {resolution.error or 'no address'}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return scheme, port, host, str(resolution.addresses[0]), path


def _connect(address: str, port: int, timeout: float, allow_private: bool) -> socket.socket:
    try:
        return netguard.connect(address, port, timeout=timeout, allow_private=allow_private)
    except netguard.TargetRefused as error:
        raise TargetRefused(str(error)) from error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    def __init__(self, host: str, port: int, address: str, timeout: float, allow_private: bool) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address
        self._allow_private = allow_private

    def connect(self) -> None:
        self.sock = _connect(self._address, self.port, self.timeout, self._allow_private)  # type: ignore[arg-type]


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    def __init__(
        self, host: str, port: int, address: str, timeout: float, allow_private: bool, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=timeout, context=context)
        self._address = address
        self._allow_private = allow_private
        self._context = context

    def connect(self) -> None:
        raw = _connect(self._address, self.port, self.timeout, self._allow_private)  # type: ignore[arg-type]
        # SNI and certificate verification use the host name; the socket goes to the checked address.
        self.sock = self._context.wrap_socket(raw, server_hostname=self.host)


def _request(
    method: str,
    url: str,
    body: bytes | None,
    headers: dict[str, str],
    *,
    allow_private: bool,
    timeout: float,
    ssl_context: ssl.SSLContext | None,
    max_bytes: int,
) -> HttpResult:
    scheme, port, host, address, path = resolve_target(url, allow_private=allow_private, timeout=timeout)
    connection: http.client.HTTPConnection
    if scheme == "https":
        context = ssl_context or ssl.create_default_context()
        connection = _PinnedHTTPSConnection(host, port, address, timeout, allow_private, context)
    else:
        connection = _PinnedHTTPConnection(host, port, address, timeout, allow_private)
    try:
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        text = response.read(max_bytes).decode("utf-8", "replace")
        return HttpResult(status=response.status, body=text, headers={k.lower(): v for k, v in response.getheaders()})
    finally:
        connection.close()


def post_json(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpResult:
    """POST `body`; raises TargetRefused (permanent) or OSError/HTTPException (temporary)."""
    return _request(
        "POST",
        url,
        body,
        {"Content-Type": "application/json", **headers},
        allow_private=allow_private,
        timeout=timeout,
        ssl_context=ssl_context,
        max_bytes=4096,
    )


def get(
    url: str,
    *,
    allow_private: bool,
    timeout: float,
    headers: dict[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
    max_bytes: int = 65536,
) -> HttpResult:
    """GET `url`, reading at most `max_bytes` of the body; errors as for `post_json`."""
    return _request(
        "GET",
        url,
        None,
        {"Accept": "application/json", **(headers or {})},
        allow_private=allow_private,
        timeout=timeout,
        ssl_context=ssl_context,
        max_bytes=max_bytes,
    )
