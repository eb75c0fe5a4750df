from __future__ import annotations

import pytest

from keychest.safehttp import TargetRefused, post_json, resolve_target


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
    with pytest.raises(OSError):
        post_json(f"http://127.0.0.1:{port}/", b"{}", {}, allow_private=True, timeout=2)
