from __future__ import annotations

import pytest

from keychest import safehttp
from keychest.safehttp import FetchError, TargetRefused, post_json, resolve_target


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/hook",
        "http://127.1/hook",
        "http://2130706433/hook",
        "http://[::1]/hook",
        "http://169.254.169.254/latest/meta-data",
        "http://10.0.0.5/hook",
        "http://[::ffff:192.168.1.1]/hook",
        "http://localhost:8080/hook",
    ],
)
def test_non_public_targets_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        resolve_target(url, allow_private=False)


@pytest.mark.parametrize("url", ["ftp://example.com/", "http://user:pw@example.com/", "https:///nohost"])
def test_malformed_urls_are_refused(url: str) -> None:
    with pytest.raises(TargetRefused):
        resolve_target(url, allow_private=True)


def test_private_targets_are_allowed_when_switched_on_and_the_checked_address_is_used() -> None:
    scheme, port, host, address, path = resolve_target("http://localhost:9/x?y=1", allow_private=True)
    assert (scheme, port, host, path) == ("http", 9, "localhost", "/x?y=1")
    assert address in ("127.0.0.1", "::1")


def test_a_closed_port_is_a_temporary_error() -> None:
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    with pytest.raises(FetchError) as caught:
        post_json(f"http://127.0.0.1:{port}/", b"{}", {}, allow_private=True, timeout=2)
    assert caught.value.code == safehttp.CONNECTION and not isinstance(caught.value, TargetRefused)


class _Endless:
    """A response without Content-Length that never ends."""

    def __init__(self) -> None:
        self.sent = 0

    def getheader(self, name: str) -> None:
        return None

    def read1(self, n: int) -> bytes:
        self.sent += n
        return b"x" * n


def test_the_cap_holds_without_a_content_length_too() -> None:
    response = _Endless()
    with pytest.raises(FetchError) as caught:
        safehttp._read_capped(response, 100_000, truncate=False)  # type: ignore[arg-type]
    assert caught.value.code == safehttp.TOO_LARGE and response.sent < 200_000
    # A webhook's answer is only read for its first bytes: cut, not refused.
    response = _Endless()
    body = safehttp._read_capped(response, 4096, truncate=True)  # type: ignore[arg-type]
    assert len(body) == 4096 and response.sent < 50_000


def _gzip_server(payload: bytes):  # type: ignore[no-untyped-def]
    import gzip
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            seen.append(self.headers.get("Accept-Encoding", ""))
            body = gzip.compress(payload)
            self.send_response(200)
            self.send_header("Content-Encoding", "gzip")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, seen


def test_a_session_reads_gzip_answers_and_caps_what_they_inflate_to() -> None:
    server, seen = _gzip_server(b"x" * 1_000_000)  # about 1 KB on the wire
    url = f"http://127.0.0.1:{server.server_address[1]}/big"
    session = safehttp.Session(allow_private=True)
    try:
        assert session.get(url, timeout=5, max_bytes=2_000_000).body == b"x" * 1_000_000
        with pytest.raises(FetchError) as caught:
            session.get(url, timeout=5, max_bytes=100_000)
        assert caught.value.code == safehttp.TOO_LARGE and "decompressed" in caught.value.message
        assert seen == ["gzip", "gzip"]
    finally:
        session.close()
        server.shutdown()
        server.server_close()
