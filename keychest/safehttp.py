"""HTTP to user- or remote-named URLs, through `kcproto.netguard`.

Webhooks POST with it; RDAP (monitors/rdap.py), ARI (certificates/ari.py), the CT log list
(certificates/loglist.py) GET with it, and CT logs (certificates/ctclient.py) through a `Session`
that keeps connections alive. Every request:
- resolves the host once and refuses it unless every address is public (unless private targets
  are allowed), then connects to the checked address, so DNS rebinding cannot swap it (SNI,
  certificate verification and the Host header still use the name);
- shares one deadline between resolving, connecting, sending and every read of the status line,
  the headers and the body, so a server that trickles one byte at a time cannot hold a worker;
- reads a bounded body: a GET answer over `max_bytes` is refused, not silently cut, and one
  announced as larger is refused before a byte of it is read;
- follows a few redirects on GET, to http(s) URLs only, each hop resolved and checked again.

No Django imports: the caller passes whether private targets are allowed.
"""

from __future__ import annotations

import contextlib
import http.client
import io
import socket
import ssl
import threading
import time
import zlib
from collections.abc import Callable, Iterator
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


class _DeadlineReader(io.RawIOBase):
    """A socket's reads, each allowed only what is left of its connection's current deadline.

    http.client reads the status line, the headers and the body through this, so a server that
    sends a byte now and then (each read returning before any per-read timeout) still cannot hold
    a request past its deadline."""

    def __init__(self, owner: _DeadlineSocket) -> None:
        super().__init__()
        self._owner = owner

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        sock = self._owner.sock
        sock.settimeout(self._owner.connection.deadline.left())
        return sock.recv_into(buffer)

    def close(self) -> None:
        if not self.closed:
            super().close()
            self._owner.reader_closed()


class _DeadlineSocket:
    """What http.client sees as its socket: sends and reads bounded by the current deadline.

    As with a real socket's `makefile`, the socket stays open while a response still reads from
    it (http.client closes the connection before the body of a `Connection: close` answer)."""

    def __init__(self, sock: socket.socket, connection: _GuardedConnection) -> None:
        self.sock, self.connection = sock, connection
        self._readers = 0
        self._closed = False

    def makefile(self, mode: str = "rb", *args: object, **kwargs: object) -> io.BufferedReader:
        self._readers += 1
        return io.BufferedReader(_DeadlineReader(self), 65536)

    def sendall(self, data: bytes) -> None:
        self.sock.settimeout(self.connection.deadline.left())  # sendall's timeout covers the whole send
        self.sock.sendall(data)

    def reader_closed(self) -> None:
        self._readers -= 1
        if self._closed and self._readers <= 0:
            self.sock.close()

    def close(self) -> None:
        self._closed = True
        if self._readers <= 0:
            self.sock.close()


class _GuardedConnection(http.client.HTTPConnection):
    """HTTP(S) to the address already checked (the Host header, SNI and certificate verification
    keep the name), every step within `deadline`, which each request sets anew."""

    def __init__(self, host: str, port: int, address: str, allow_private: bool, context: ssl.SSLContext | None) -> None:
        super().__init__(host, port)
        self.address, self._allow_private, self._context = address, allow_private, context
        self.deadline = Deadline(0)

    def connect(self) -> None:
        raw = _connect(self.address, self.port, self.deadline, self._allow_private)
        raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock: socket.socket = raw
        if self._context is not None:
            # The handshake as a whole is bounded by this timeout (CPython keeps one deadline for it).
            raw.settimeout(self.deadline.left())
            try:
                sock = self._context.wrap_socket(raw, server_hostname=self.host)
            except BaseException:
                raw.close()
                raise
        self.sock = _DeadlineSocket(sock, self)  # type: ignore[assignment]


def _split(url: str) -> tuple[str, str, int, str]:
    """(scheme, host, port, path+query) of an http(s) URL; TargetRefused for anything else."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https") or not parts.hostname:
        raise TargetRefused("only http:// and https:// URLs with a host name are allowed")
    if parts.username or parts.password:
        raise TargetRefused("credentials in the URL are not allowed")
    try:
        port = parts.port or (443 if scheme == "https" else 80)
    except ValueError:
        raise TargetRefused("invalid port") from None
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return scheme, parts.hostname, port, path


def _checked_address(host: str, *, allow_private: bool, deadline: Deadline) -> str:
    """The one address of `host` to connect to, or FetchError (TargetRefused if any is not public)."""
    resolution = netguard.resolve(host, allow_private=allow_private, timeout=min(5.0, deadline.left()))
    if resolution.refused:
        # Every address must be public: otherwise an attacker's name could point half its
        # records at the internal network and wait for the connection that lands there.
        address, reason = resolution.refused[0]
        raise TargetRefused(f"{host} resolves to a non-public address ({address}: {reason})")
    if not resolution.addresses:
        code = TIMEOUT if resolution.error == "timeout" else CONNECTION
        raise FetchError(code, f"cannot resolve {host}: {resolution.error or 'no address'}")
    return str(resolution.addresses[0])


def _resolve(url: str, *, allow_private: bool, deadline: Deadline) -> tuple[str, int, str, str, str]:
    """(scheme, port, host, checked address, path+query) of an http(s) URL, or FetchError."""
    scheme, host, port, path = _split(url)
    return scheme, port, host, _checked_address(host, allow_private=allow_private, deadline=deadline), path


def resolve_target(url: str, *, allow_private: bool, timeout: float = 5.0) -> tuple[str, int, str, str, str]:
    """(scheme, port, host, checked address, path) for an http(s) URL: TargetRefused for a URL
    that must not be used, ConnectionError for a name that does not resolve."""
    try:
        return _resolve(url, allow_private=allow_private, deadline=Deadline(timeout))
    except TargetRefused:
        raise
    except FetchError as error:
        raise ConnectionError(error.message) from None


def _read_capped(response: http.client.HTTPResponse, max_bytes: int, *, truncate: bool) -> bytes:
    """At most `max_bytes` of the body: more is an error, or (`truncate`) simply not read.

    Every read is bounded by the connection's deadline (`_DeadlineReader`)."""
    length = response.getheader("Content-Length")
    if length and length.isdigit():
        if int(length) > max_bytes:
            if not truncate:
                raise FetchError(TOO_LARGE, f"an answer of {length} bytes is over the {max_bytes}-byte cap")
        else:
            return response.read()  # announced and within the cap: one read, however it arrives
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = response.read1(min(65536, max_bytes - size + 1))
        if not chunk:
            break
        size += len(chunk)
        if size > max_bytes:
            if truncate:
                chunks.append(chunk)
                return b"".join(chunks)[:max_bytes]
            raise FetchError(TOO_LARGE, f"the answer is over the {max_bytes}-byte cap")
        chunks.append(chunk)
    return b"".join(chunks)


def _gunzip_capped(body: bytes, max_bytes: int) -> bytes:
    """A gzip body decompressed, refused past `max_bytes` of output (a small bomb stays small)."""
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, max_bytes + 1)
    except zlib.error:
        raise FetchError(HTTP_ERROR, "the gzip body is garbled") from None
    if len(out) > max_bytes or inflater.unconsumed_tail:
        raise FetchError(TOO_LARGE, f"the answer is over the {max_bytes}-byte cap once decompressed")
    return out


def _discard(response: http.client.HTTPResponse) -> None:
    """Read a small unwanted body (a redirect, an error page) so the connection can be reused."""
    length = response.getheader("Content-Length")
    if length and length.isdigit() and int(length) <= 65536:
        response.read()


def _roundtrip(
    connection: _GuardedConnection,
    method: str,
    path: str,
    *,
    body: bytes | None,
    headers: dict[str, str],
    deadline: Deadline,
    max_bytes: int,
    read_error_bodies: bool,
    gzip: bool = False,
) -> tuple[HttpResult, bool]:
    """One request on `connection` (connecting if needed): the result, and whether the
    connection may carry another request. With `gzip`, a gzip-encoded answer is accepted and
    decompressed (both sizes within the cap)."""
    if gzip:
        headers = {**headers, "Accept-Encoding": "gzip"}
    connection.deadline = deadline
    if connection.sock is None:
        connection.connect()
    connection.request(method, path, body=body, headers=headers)
    response = connection.getresponse()
    answer_headers = {k.lower(): v for k, v in response.getheaders()}
    text = b""
    if response.status == 200 or (read_error_bodies and response.status not in REDIRECTS):
        text = _read_capped(response, max_bytes, truncate=read_error_bodies)
        if gzip and answer_headers.get("content-encoding", "").lower() in ("gzip", "x-gzip"):
            text = _gunzip_capped(text, max_bytes)
    else:
        _discard(response)
    reusable = response.isclosed() and not response.will_close
    return HttpResult(status=response.status, body=text, headers=answer_headers), reusable


@contextlib.contextmanager
def _network_errors(host: str) -> Iterator[None]:
    """Network failures as FetchError (ours pass through)."""
    try:
        yield
    except FetchError:
        raise
    except TimeoutError:
        raise FetchError(TIMEOUT, f"{host} timed out") from None
    except ssl.SSLError as error:
        raise FetchError(CONNECTION, f"TLS with {host} failed: {error.reason or error}") from None
    except (OSError, http.client.HTTPException) as error:
        raise FetchError(CONNECTION, f"{host}: {type(error).__name__}: {error}"[:300]) from None


def _follow(url: str, exchange: Callable[[str], HttpResult]) -> HttpResult:
    """GET `url` through `exchange`, following up to MAX_REDIRECTS redirects (each hop is a
    new URL: `exchange` checks its scheme and address again)."""
    for _hop in range(MAX_REDIRECTS + 1):
        result = exchange(url)
        location = result.headers.get("location")
        if result.status in REDIRECTS and location:
            url = urljoin(url, location)
            continue
        return result
    raise FetchError(HTTP_ERROR, "too many redirects")


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
) -> HttpResult:
    """One request to one URL on a connection of its own. Network failures become FetchError."""
    scheme, port, host, address, path = _resolve(url, allow_private=allow_private, deadline=deadline)
    context = (ssl_context or ssl.create_default_context()) if scheme == "https" else None
    connection = _GuardedConnection(host, port, address, allow_private, context)
    try:
        with _network_errors(host):
            result, _ = _roundtrip(
                connection,
                method,
                path,
                body=body,
                headers=headers,
                deadline=deadline,
                max_bytes=max_bytes,
                read_error_bodies=read_error_bodies,
            )
        return result
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
    return _follow(
        url,
        lambda hop: _exchange(
            "GET",
            hop,
            body=None,
            headers=wanted,
            allow_private=allow_private,
            deadline=deadline,
            ssl_context=ssl_context,
            max_bytes=max_bytes,
            read_error_bodies=False,
        ),
    )


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
    return _exchange(
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


class Session:
    """Guarded GETs that keep connections alive: for a client that asks the same hosts many times
    (a CT log: thousands of requests, several at once from a few threads).

    Each host is resolved and checked once and again every `resolve_every` seconds; connections
    go to the checked address and are reused while the server keeps them open (an idle one the
    server closed meanwhile is replaced once, transparently: GET is idempotent). Every request
    has its own deadline and byte cap, and redirects are checked hop by hop, as for `get`.
    Answers may come gzip-compressed (CT logs' JSON shrinks about threefold).
    Thread-safe: a connection serves one request at a time."""

    def __init__(
        self,
        *,
        allow_private: bool,
        ssl_context: ssl.SSLContext | None = None,
        max_idle: int = 8,
        resolve_every: float = 300.0,
    ) -> None:
        self.allow_private = allow_private
        self._ssl_context = ssl_context
        self._max_idle = max_idle
        self._resolve_every = resolve_every
        self._lock = threading.Lock()
        self._addresses: dict[str, tuple[str, float]] = {}
        self._idle: dict[tuple[str, str, int], list[_GuardedConnection]] = {}

    def get(self, url: str, *, timeout: float, max_bytes: int, headers: dict[str, str] | None = None) -> HttpResult:
        deadline = Deadline(timeout)
        return _follow(url, lambda hop: self._get_one(hop, deadline, max_bytes, headers or {}))

    def close(self) -> None:
        with self._lock:
            idle = [c for conns in self._idle.values() for c in conns]
            self._idle.clear()
        for connection in idle:
            connection.close()

    def _address(self, host: str, deadline: Deadline) -> str:
        with self._lock:
            known = self._addresses.get(host)
        if known is not None and time.monotonic() - known[1] < self._resolve_every:
            return known[0]
        address = _checked_address(host, allow_private=self.allow_private, deadline=deadline)
        with self._lock:
            self._addresses[host] = (address, time.monotonic())
        return address

    def _checkout(self, key: tuple[str, str, int], address: str) -> tuple[_GuardedConnection, bool]:
        """An idle connection to `address`, or a new one (not connected yet); and whether reused."""
        stale: list[_GuardedConnection] = []
        found = None
        with self._lock:
            idle = self._idle.get(key, [])
            while idle and found is None:
                candidate = idle.pop()
                if candidate.address == address:
                    found = candidate
                else:
                    stale.append(candidate)  # the name moved to another address since
        for connection in stale:
            connection.close()
        if found is not None:
            return found, True
        scheme, host, port = key
        context = (self._ssl_context or ssl.create_default_context()) if scheme == "https" else None
        return _GuardedConnection(host, port, address, self.allow_private, context), False

    def _checkin(self, key: tuple[str, str, int], connection: _GuardedConnection) -> None:
        with self._lock:
            idle = self._idle.setdefault(key, [])
            if len(idle) < self._max_idle:
                idle.append(connection)
                return
        connection.close()

    def _get_one(self, url: str, deadline: Deadline, max_bytes: int, headers: dict[str, str]) -> HttpResult:
        scheme, host, port, path = _split(url)
        key = (scheme, host, port)
        with _network_errors(host):
            address = self._address(host, deadline)
        for attempt in (1, 2):
            connection, reused = self._checkout(key, address)
            try:
                with _network_errors(host):
                    try:
                        result, reusable = _roundtrip(
                            connection,
                            "GET",
                            path,
                            body=None,
                            headers=headers,
                            deadline=deadline,
                            max_bytes=max_bytes,
                            read_error_bodies=False,
                            gzip=True,
                        )
                    except (ConnectionError, http.client.BadStatusLine):
                        # A kept-alive connection the server closed meanwhile: once more on a new one.
                        if reused and attempt == 1:
                            connection.close()
                            continue
                        raise
            except BaseException:
                connection.close()
                if not reused:
                    with self._lock:
                        self._addresses.pop(host, None)  # look the name up again next time
                raise
            if reusable:
                self._checkin(key, connection)
            else:
                connection.close()
            return result
        raise AssertionError("unreachable")  # pragma: no cover
