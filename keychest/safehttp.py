"""HTTP to user- or remote-named URLs, through `kcproto.netguard`.

Webhooks POST with it; RDAP (monitors/rdap.py) and ARI (certificates/ari.py) GET with it. Every
request:
- resolves the host once and refuses it unless every address is public (unless private targets
  are allowed), then connects to the checked address, so DNS rebinding cannot swap it (SNI,
  certificate verification and the Host header still use the name);
- shares one deadline between resolving, connecting, sending and every read, so a server that
  trickles one byte at a time cannot hold a worker;
- reads a bounded body: a GET answer over `max_bytes` is refused, not silently cut;
- follows a few redirects on GET, to http(s) URLs only, each hop checked again.

No Django imports: the caller passes whether private targets are allowed.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from kcproto import netguard

# Error codes (FetchError.code): short and stable, callers store and show them.
REFUSED = "refused"
TIMEOUT = "timeout"
CONNECTION = "connection"
TOO_LARGE = "too_large"
HTTP_ERROR = "http_error"
MAX_REDIRECTS = 3
REDIRECTS = (301, 302, 303, 307, 308)


class FetchError(Exception):
    """A request that produced no usable answer, with a code saying why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class TargetRefused(FetchError):
    """The URL is malformed or points at an address we must not connect to (permanent)."""

    def __init__(self, message: str) -> None:
        super().__init__(REFUSED, message)


@dataclass(frozen=True)
class HttpResult:
    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)

    @property
    def text(self) -> str:
        return self.body.decode("utf-8", "replace")


class Deadline:
    """One time budget shared by every step of a request."""

    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def left(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise FetchError(TIMEOUT, "the request took too long")
        return left


def _connect(address: str, port: int, deadline: Deadline, allow_private: bool) -> socket.socket:
    try:
        return netguard.connect(address, port, timeout=deadline.left(), allow_private=allow_private)
    except netguard.TargetRefused as error:
        raise TargetRefused(str(error)) from error


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """HTTP to the address already checked; the Host header keeps the name."""

    def __init__(self, host: str, port: int, address: str, deadline: Deadline, allow_private: bool) -> None:
        super().__init__(host, port, timeout=deadline.left())
        self._address, self._deadline, self._allow_private = address, deadline, allow_private

    def connect(self) -> None:
        self.sock = _connect(self._address, self.port, self._deadline, self._allow_private)


class _PinnedHTTPSConnection(http.client.HTTPSConnection):
    """HTTPS to the address already checked; SNI and certificate verification use the name."""

    def __init__(
        self, host: str, port: int, address: str, deadline: Deadline, allow_private: bool, context: ssl.SSLContext
    ) -> None:
        super().__init__(host, port, timeout=deadline.left(), context=context)
        self._address, self._deadline, self._allow_private = address, deadline, allow_private
        self._ssl_context = context

    def connect(self) -> None:
        raw = _connect(self._address, self.port, self._deadline, self._allow_private)
        raw.settimeout(self._deadline.left())
        self.sock = self._ssl_context.wrap_socket(raw, server_hostname=self.host)


def _resolve(url: str, *, allow_private: bool, deadline: Deadline) -> tuple[str, int, str, str, str]:
    """(scheme, port, host, checked address, path+query) of an http(s) URL, or FetchError."""
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
    resolution = netguard.resolve(host, allow_private=allow_private, timeout=min(5.0, deadline.left()))
    if resolution.refused:
        # Every address must be public: otherwise an attacker's name could point half its
        # records at the internal network and wait for the connection that lands there.
        address, reason = resolution.refused[0]
        raise TargetRefused(f"{host} resolves to a non-public address ({address}: {reason})")
    if not resolution.addresses:
        code = TIMEOUT if resolution.error == "timeout" else CONNECTION
        raise FetchError(code, f"cannot resolve {host}: {resolution.error or 'no address'}")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, port, host, str(resolution.addresses[0]), path


def resolve_target(url: str, *, allow_private: bool, timeout: float = 5.0) -> tuple[str, int, str, str, str]:
    """(scheme, port, host, checked address, path) for an http(s) URL: TargetRefused for a URL
    that must not be used, ConnectionError for a name that does not resolve."""
    try:
        return _resolve(url, allow_private=allow_private, deadline=Deadline(timeout))
    except TargetRefused:
        raise
    except FetchError as error:
        raise ConnectionError(error.message) from None


def _read_capped(
    response: http.client.HTTPResponse, sock: socket.socket, deadline: Deadline, max_bytes: int, *, truncate: bool
) -> bytes:
    """At most `max_bytes` of the body: more is an error, or (`truncate`) simply not read."""
    length = response.getheader("Content-Length")
    if not truncate and length and length.isdigit() and int(length) > max_bytes:
        raise FetchError(TOO_LARGE, f"an answer of {length} bytes is over the {max_bytes}-byte cap")
    chunks: list[bytes] = []
    size = 0
    while True:
        # Each read waits at most for what is left of the whole deadline.
        sock.settimeout(deadline.left())
        chunk = response.read1(16384)
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            if truncate:
                chunks.append(chunk)
                return b"".join(chunks)[:max_bytes]
            raise FetchError(TOO_LARGE, f"the answer is over the {max_bytes}-byte cap")
        chunks.append(chunk)
        deadline.left()
    return b"".join(chunks)


def _exchange(
    method: str,
    url: str,
    *,
    body: bytes | None,
    headers: dict[str, str],
    allow_private: bool,
    deadline: Deadline,
    ssl_context: ssl.SSLContext | None,
    max_bytes: int,
    read_error_bodies: bool,
) -> tuple[HttpResult, str]:
    """One request to one URL: (result, the URL asked). Network failures become FetchError."""
    scheme, port, host, address, path = _resolve(url, allow_private=allow_private, deadline=deadline)
    connection: http.client.HTTPConnection
    if scheme == "https":
        context = ssl_context or ssl.create_default_context()
        connection = _PinnedHTTPSConnection(host, port, address, deadline, allow_private, context)
    else:
        connection = _PinnedHTTPConnection(host, port, address, deadline, allow_private)
    try:
        connection.connect()
        assert connection.sock is not None
        sock = connection.sock
        sock.settimeout(deadline.left())
        connection.request(method, path, body=body, headers=headers)
        response = connection.getresponse()
        answer_headers = {k.lower(): v for k, v in response.getheaders()}
        read = response.status == 200 or (read_error_bodies and response.status not in REDIRECTS)
        text = _read_capped(response, sock, deadline, max_bytes, truncate=read_error_bodies) if read else b""
        return HttpResult(status=response.status, body=text, headers=answer_headers), url
    except FetchError:
        raise
    except TimeoutError:
        raise FetchError(TIMEOUT, f"{host} timed out") from None
    except ssl.SSLError as error:
        raise FetchError(CONNECTION, f"TLS with {host} failed: {error.reason or error}") from None
    except (OSError, http.client.HTTPException) as error:
        raise FetchError(CONNECTION, f"{host}: {type(error).__name__}: {error}"[:300]) from None
    finally:
        connection.close()


def get(
    url: str,
    *,
    allow_private: bool,
    timeout: float,
    max_bytes: int = 65536,
    headers: dict[str, str] | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpResult:
    """GET `url` within `timeout` seconds in all, following up to MAX_REDIRECTS redirects.

    Only a 200 answer's body is read (an error page could be slow or huge). FetchError (with
    TargetRefused for addresses we must not reach) for anything that is not an HTTP answer."""
    deadline = Deadline(timeout)
    wanted = {"Accept": "application/json", **(headers or {})}
    for _hop in range(MAX_REDIRECTS + 1):
        result, url = _exchange(
            "GET",
            url,
            body=None,
            headers=wanted,
            allow_private=allow_private,
            deadline=deadline,
            ssl_context=ssl_context,
            max_bytes=max_bytes,
            read_error_bodies=False,
        )
        location = result.headers.get("location")
        if result.status in REDIRECTS and location:
            url = urljoin(url, location)
            continue
        return result
    raise FetchError(HTTP_ERROR, "too many redirects")


def post_json(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    allow_private: bool,
    timeout: float,
    ssl_context: ssl.SSLContext | None = None,
) -> HttpResult:
    """POST `body` within `timeout` seconds; no redirects followed. TargetRefused is permanent,
    other FetchErrors are temporary. The answer's body is read up to 4 KiB (for error messages)."""
    result, _ = _exchange(
        "POST",
        url,
        body=body,
        headers={"Content-Type": "application/json", **headers},
        allow_private=allow_private,
        deadline=Deadline(timeout),
        ssl_context=ssl_context,
        max_bytes=4096,
        read_error_bodies=True,
    )
    return result
