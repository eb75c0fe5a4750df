"""Run third-party code (Apprise's 100+ services) with every socket it opens checked: no Django.

`guarded_call(fn, policy)` runs `fn` in a worker thread whose context carries the policy, and:

1. **HTTP is resolved once and pinned.** urllib3 (under requests, which Apprise's HTTP services
   use) opens its TCP connections through `urllib3.util.connection.create_connection`; inside a
   guarded call that function is ours: it resolves the host once through
   `kcproto.netguard.resolve` (refusing the name if any address is not public, unless private
   targets are allowed) and connects with `netguard.connect` to exactly the checked address.
   The name is never resolved again, so a DNS answer that changes between check and use
   (rebinding) changes nothing. TLS is layered on top by urllib3 as usual, so SNI and
   certificate verification still use the host name.
2. **Every other socket is checked where it connects.** A process-wide audit hook
   (`sys.addaudithook`, events `socket.connect`, `socket.sendto`, `socket.sendmsg`) refuses,
   inside a guarded call only, any connection or datagram to a non-public address and any
   non-IP socket (AF_UNIX...). The check is on the address the kernel is handed, after
   whatever resolution the library did, so it is rebinding-safe by construction; it covers
   services that do not speak HTTP (SMTP, XMPP, syslog...) and any library that bypasses urllib3.
3. **One deadline for everything.** The call runs in a thread; when `policy.timeout` is over,
   every connection it opened is shut down (through a duplicate of each socket taken when it
   connected, so the descriptor can never be another connection's by then) and later connects
   are refused. A server trickling bytes cannot hold a worker.
4. **Secrets are redacted from every log record** created inside the call, by any logger
   (Apprise, urllib3, requests, ours), including formatted tracebacks: a log record factory
   replaces each of `policy.secrets` with `***`. Apprise's warnings are kept (redacted) so the
   caller can say why a send failed.

Outside a guarded call the hooks do nothing (one context-variable read).
"""

from __future__ import annotations

import contextlib
import contextvars
import logging
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from kcproto import netguard

T = TypeVar("T")
REDACTED = "***"


class GuardRefused(ConnectionRefusedError):
    """A connection the guard would not allow (an OSError, so libraries treat it as a failure)."""


@dataclass
class Policy:
    """What a guarded call may reach, for how long, and what it must never log."""

    allow_private: bool
    timeout: float
    nameservers: list[tuple[str, int]] = field(default_factory=list)
    secrets: tuple[str, ...] = ()
    # Filled during the call:
    refused: list[str] = field(default_factory=list)
    connected: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    expired: bool = False
    deadline: float = 0.0
    _resolving: bool = False
    _duplicates: list[socket.socket] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def redact(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, REDACTED)
        return text

    def refuse(self, reason: str) -> GuardRefused:
        self.refused.append(reason)
        return GuardRefused(reason)

    def track(self, sock: socket.socket) -> None:
        with self._lock:
            if self.expired:
                raise self.refuse("the time budget of the call is over")
            self._duplicates.append(sock.dup())

    def expire(self) -> None:
        """Out of time: shut every connection down (unblocks a reading thread), allow no more."""
        with self._lock:
            self.expired = True
            for duplicate in self._duplicates:
                with contextlib.suppress(OSError):
                    duplicate.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        with self._lock:
            for duplicate in self._duplicates:
                duplicate.close()
            self._duplicates.clear()


_POLICY: contextvars.ContextVar[Policy | None] = contextvars.ContextVar("keychest_socket_policy", default=None)
_INSTALLED = False
_INSTALL_LOCK = threading.Lock()
_AUDITED = frozenset({"socket.connect", "socket.sendto", "socket.sendmsg"})


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event not in _AUDITED:
        return
    policy = _POLICY.get()
    if policy is None or policy._resolving:
        return
    sock, address = args[0], args[-1]
    if address is None:  # sendmsg on a connected socket: checked when it connected
        return
    if sock.family not in (socket.AF_INET, socket.AF_INET6):
        raise policy.refuse(f"{event}: only IP sockets may be opened here")
    host = address[0] if isinstance(address, tuple) else str(address)
    try:
        netguard.check_address(host, allow_private=policy.allow_private)
    except netguard.TargetRefused as error:
        raise policy.refuse(str(error)) from None
    if event == "socket.connect":
        if policy.left() <= 0:
            raise policy.refuse("the time budget of the call is over")
        policy.track(sock)
        policy.connected.append(f"{host}:{address[1]}")


def _create_connection(
    address: tuple[str, int],
    timeout: Any = socket._GLOBAL_DEFAULT_TIMEOUT,  # type: ignore[attr-defined]
    source_address: tuple[str, int] | None = None,
    socket_options: Any = None,
) -> socket.socket:
    """urllib3's connection factory: inside a guarded call, resolve once and pin the address."""
    policy = _POLICY.get()
    if policy is None:
        return _ORIGINAL_CREATE_CONNECTION(address, timeout, source_address, socket_options)
    host, port = address
    left = policy.left()
    if left <= 0:
        raise policy.refuse("the time budget of the call is over")
    policy._resolving = True
    try:
        resolution = netguard.resolve(
            host, allow_private=policy.allow_private, timeout=min(5.0, left), nameservers=policy.nameservers or None
        )
    finally:
        policy._resolving = False
    if resolution.refused:
        # Every address must be public: a name could point half its records inside.
        ip, reason = resolution.refused[0]
        raise policy.refuse(f"{host} resolves to a non-public address ({ip}: {reason})")
    if not resolution.addresses:
        raise OSError(f"cannot resolve {host}: {resolution.error or 'no address'}")
    wait = policy.left() if timeout in (None, socket._GLOBAL_DEFAULT_TIMEOUT) else min(timeout, policy.left())  # type: ignore[attr-defined]
    sock = netguard.connect(resolution.addresses[0], port, timeout=max(wait, 0.001), allow_private=policy.allow_private)
    for option in socket_options or ():
        sock.setsockopt(*option)
    return sock


def _redacting_factory(previous: Callable[..., logging.LogRecord]) -> Callable[..., logging.LogRecord]:
    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        policy = _POLICY.get()
        if policy is None:
            return record
        try:
            message = policy.redact(record.getMessage())
        except Exception:  # noqa: BLE001 - a record whose arguments do not format: keep none of it
            message = policy.redact(str(record.msg))
        record.msg, record.args = message, None
        if record.exc_info:
            record.exc_text = policy.redact(logging.Formatter().formatException(record.exc_info))
            record.exc_info = None
        if record.stack_info:
            record.stack_info = policy.redact(record.stack_info)
        if record.levelno >= logging.WARNING and record.name.startswith("apprise"):
            policy.warnings.append(message)
        return record

    return factory


def install() -> None:
    """Put the hooks in place (once per process; they do nothing outside a guarded call)."""
    global _INSTALLED, _ORIGINAL_CREATE_CONNECTION
    with _INSTALL_LOCK:
        if _INSTALLED:
            return
        import urllib3.util.connection

        _ORIGINAL_CREATE_CONNECTION = urllib3.util.connection.create_connection
        urllib3.util.connection.create_connection = _create_connection  # type: ignore[assignment]
        sys.addaudithook(_audit)
        logging.setLogRecordFactory(_redacting_factory(logging.getLogRecordFactory()))
        _INSTALLED = True


_ORIGINAL_CREATE_CONNECTION: Callable[..., socket.socket] = socket.create_connection


@dataclass
class Result:
    """What a guarded call returned (or raised), and whether it ran out of time."""

    value: Any = None
    error: BaseException | None = None
    timed_out: bool = False


def guarded_call(fn: Callable[[], T], policy: Policy) -> Result:
    """Run `fn` under `policy` in a worker thread, within `policy.timeout` seconds in all."""
    install()
    policy.deadline = time.monotonic() + policy.timeout
    result = Result()

    def run() -> None:
        _POLICY.set(policy)
        try:
            result.value = fn()
        except BaseException as error:  # noqa: BLE001 - handed to the caller as it is
            result.error = error

    context = contextvars.copy_context()
    worker = threading.Thread(target=context.run, args=(run,), name="keychest-guarded", daemon=True)
    worker.start()
    worker.join(policy.timeout)
    if worker.is_alive():
        result.timed_out = True
        policy.expire()
        worker.join(5.0)  # its sockets are shut: it fails at once
    policy.close()
    return result
