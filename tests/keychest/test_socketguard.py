"""kcproto.socketguard: inside a guarded call every socket is checked, HTTP is pinned, the call
has one deadline and secrets leave no log record; outside it nothing changes."""

from __future__ import annotations

import logging
import smtplib
import socket
import threading
import time

import pytest
import requests

from kcproto import socketguard


def _policy(**kwargs) -> socketguard.Policy:
    return socketguard.Policy(
        allow_private=kwargs.pop("allow_private", False), timeout=kwargs.pop("timeout", 3.0), **kwargs
    )


@pytest.fixture
def listener():
    """A TCP server on 127.0.0.1 that accepts and then trickles one byte a second."""
    server = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def serve() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                conn, _ = server.accept()
            except OSError:
                continue
            accepted.append(conn)
            conn.sendall(b"HTTP/1.1 200 OK\r\n")

    def trickle() -> None:
        while not stop.is_set():
            for conn in list(accepted):
                try:
                    conn.sendall(b"X")
                except OSError:
                    accepted.remove(conn)
            time.sleep(0.5)

    threads = [threading.Thread(target=serve, daemon=True), threading.Thread(target=trickle, daemon=True)]
    for t in threads:
        t.start()
    yield server.getsockname()[1], accepted
    stop.set()
    server.close()


def test_every_kind_of_socket_to_a_private_address_is_refused_inside_the_guard(listener) -> None:
    port, accepted = listener
    attempts = {
        "tcp": lambda: socket.create_connection(("127.0.0.1", port), timeout=1),
        "smtp": lambda: smtplib.SMTP("127.0.0.1", port, timeout=1),
        "http": lambda: requests.get(f"http://127.0.0.1:{port}/", timeout=1),
        "udp": lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"x", ("127.0.0.1", 514)),
        "unix": lambda: socket.socket(socket.AF_UNIX).connect("/run/postgresql/.s.PGSQL.5432"),
    }
    for name, attempt in attempts.items():
        policy = _policy()
        result = socketguard.guarded_call(attempt, policy)
        assert policy.refused, name
        assert result.error is not None or result.value is None, name
    time.sleep(0.3)
    assert accepted == []
    # Outside a guarded call the same connection is made as usual.
    socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_private_targets_are_reached_when_allowed(listener) -> None:
    port, _accepted = listener
    policy = _policy(allow_private=True, timeout=1.5)
    result = socketguard.guarded_call(lambda: socket.create_connection(("127.0.0.1", port), timeout=1).close(), policy)
    assert result.error is None and policy.connected == [f"127.0.0.1:{port}"]


def test_a_trickling_server_cannot_hold_the_call_past_its_deadline(listener) -> None:
    port, _accepted = listener

    def read_forever() -> bytes:
        sock = socket.create_connection(("127.0.0.1", port), timeout=30)
        data = b""
        while chunk := sock.recv(1):
            data += chunk
        return data

    started = time.monotonic()
    result = socketguard.guarded_call(read_forever, _policy(allow_private=True, timeout=1.5))
    assert result.timed_out and time.monotonic() - started < 4


def test_secrets_are_redacted_from_every_log_record_made_inside_the_guard(caplog) -> None:
    caplog.set_level(logging.DEBUG)
    secret = "tok-9f8e7d6c5b"

    def noisy() -> None:
        logging.getLogger("apprise").warning("failed to post to https://api.example/bot%s/send", secret)
        try:
            raise ValueError(f"bad token {secret}")
        except ValueError:
            logging.getLogger("urllib3.connectionpool").exception("boom")

    policy = _policy(secrets=(secret,))
    socketguard.guarded_call(noisy, policy)
    logging.getLogger("apprise").warning("outside: %s", secret)

    inside = [r for r in caplog.records if not r.getMessage().startswith("outside")]
    assert len(inside) == 2
    for record in inside:
        assert secret not in record.getMessage() and secret not in (record.exc_text or "")
    assert "***" in inside[0].getMessage() and "ValueError: bad token ***" in inside[1].exc_text
    assert policy.warnings == ["failed to post to https://api.example/bot***/send"]
    assert any(r.getMessage() == f"outside: {secret}" for r in caplog.records)  # no effect outside
