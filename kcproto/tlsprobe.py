"""One TLS probe of one address: connect, STARTTLS if asked, handshake, capture the chain.

Pure protocol code (no Django). The stdlib `ssl` module cannot hand back an unverified chain on
Python 3.11, so the handshake runs in pyOpenSSL over memory BIOs, driven by asyncio: we own
every byte read from the network, so reads are capped, every step has a deadline, and a hostile
server (silent, trickling, garbage, endless chain) ends the probe with an error code instead of
holding a worker.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ipaddress
import socket
import time
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any, TypeVar

from OpenSSL import SSL

from kcproto import netguard
from kcproto.starttls import StartTLSRefused, starttls

T = TypeVar("T")

DEFAULT_DEADLINE = 10.0
DEFAULT_CONNECT_TIMEOUT = 5.0
MAX_HANDSHAKE_BYTES = 256 * 1024
MAX_CHAIN = 16
LEGACY_VERSIONS = ("TLSv1", "TLSv1.1")
# How `Probe.legacy_versions` names them (OpenSSL says "TLSv1" for TLS 1.0).
LEGACY_NAMES = {"TLSv1": "TLS 1.0", "TLSv1.1": "TLS 1.1"}
# A server may hold an RSA and an ECDSA certificate side by side and pick by what the client
# offers. The second handshake offers only the other family (signature algorithms for TLS 1.3,
# authentication in the cipher list for TLS 1.2), so it sees the other certificate if there is one.
ALTERNATE_OFFER: dict[str, tuple[bytes, bytes]] = {
    "rsa": (
        b"rsa_pss_rsae_sha256:rsa_pss_rsae_sha384:rsa_pss_rsae_sha512:rsa_pkcs1_sha256:rsa_pkcs1_sha384:"
        b"rsa_pkcs1_sha512",
        b"aRSA:@SECLEVEL=0",
    ),
    "ecdsa": (
        b"ecdsa_secp256r1_sha256:ecdsa_secp384r1_sha384:ecdsa_secp521r1_sha512:ed25519:ed448",
        b"aECDSA:@SECLEVEL=0",
    ),
}


@dataclass
class Probe:
    """What one address presented (or why it presented nothing)."""

    address: str
    port: int
    error_code: str = ""
    error_message: str = ""
    chain_der: list[bytes] = field(default_factory=list)
    chain_truncated: bool = False
    tls_version: str = ""
    cipher: str = ""
    # Every legacy version the server accepts ("TLS 1.0", "TLS 1.1"), oldest first.
    legacy_versions: list[str] = field(default_factory=list)
    # The other certificate (RSA beside ECDSA, or the reverse) the same address serves, if any.
    alt_chain_der: list[bytes] = field(default_factory=list)
    alternate_probed: bool = False  # whether the second handshake was tried this time
    elapsed_ms: int = 0

    @property
    def ok(self) -> bool:
        return not self.error_code


def _context(*, legacy_only: bool, family: str = "", tls10: bool = False) -> SSL.Context:
    ctx = SSL.Context(SSL.TLS_CLIENT_METHOD)
    ctx.set_verify(SSL.VERIFY_NONE)
    # We inspect whatever the server presents (weak keys, SHA-1, old versions): validation
    # happens afterwards, on the captured chain, not in the handshake.
    ctx.set_cipher_list(b"ALL:@SECLEVEL=0")
    ctx.set_min_proto_version(SSL.TLS1_VERSION)
    if legacy_only:
        ctx.set_max_proto_version(SSL.TLS1_VERSION if tls10 else SSL.TLS1_1_VERSION)
    if family:
        sigalgs, ciphers = ALTERNATE_OFFER[family]
        ctx.set_cipher_list(ciphers)
        # pyOpenSSL has no wrapper for the signature algorithm list; its bindings do.
        from OpenSSL._util import lib

        if lib.SSL_CTX_set1_sigalgs_list(ctx._context, sigalgs) != 1:  # type: ignore[attr-defined]
            raise RuntimeError("OpenSSL refused the signature algorithm list")
    ctx.set_options(SSL.OP_NO_TICKET | SSL.OP_NO_COMPRESSION)
    return ctx


_CONTEXTS: dict[tuple[bool, str, bool], SSL.Context] = {}


def alternate_supported() -> bool:
    from OpenSSL._util import lib

    return bool(getattr(lib, "Cryptography_HAS_SIGALGS", 0)) and hasattr(lib, "SSL_CTX_set1_sigalgs_list")


def context(*, legacy_only: bool = False, family: str = "", tls10: bool = False) -> SSL.Context:
    key = (legacy_only, family, tls10)
    if key not in _CONTEXTS:
        _CONTEXTS[key] = _context(legacy_only=legacy_only, family=family, tls10=tls10)
    return _CONTEXTS[key]


def _looks_like_tls(first: bytes) -> bool:
    """A TLS record starts with a handshake (22) or alert (21) type and major version 3."""
    return len(first) >= 2 and first[0] in (0x15, 0x16) and first[1] == 0x03


class _Failure(Exception):
    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _remaining(deadline: float) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise _Failure("timeout", "deadline reached")
    return left


async def _handshake(
    sock: socket.socket,
    sni: str,
    deadline: float,
    *,
    legacy_only: bool,
    pending: bytes = b"",
    family: str = "",
    tls10: bool = False,
) -> SSL.Connection:
    loop = asyncio.get_running_loop()
    conn = SSL.Connection(context(legacy_only=legacy_only, family=family, tls10=tls10), None)
    if sni and not _is_ip(sni):
        conn.set_tlsext_host_name(sni.encode("ascii"))
    conn.set_connect_state()
    received = 0
    first = b""
    if pending:
        conn.bio_write(pending)
        first = pending[:2]
    while True:
        try:
            conn.do_handshake()
            break
        except SSL.WantReadError:
            pass
        except SSL.Error as exc:
            if first and not _looks_like_tls(first):
                raise _Failure("not_tls", f"the server does not speak TLS (first bytes {first!r})") from None
            raise _Failure("tls_handshake_failed", _ssl_message(exc)) from None
        outgoing = b""
        while True:
            try:
                outgoing += conn.bio_read(65536)
            except SSL.WantReadError:
                break
        if outgoing:
            try:
                await asyncio.wait_for(loop.sock_sendall(sock, outgoing), _remaining(deadline))
            except TimeoutError:
                raise _Failure("timeout", "timed out sending the TLS handshake") from None
            except OSError as exc:
                raise _Failure("tls_handshake_failed", f"connection lost: {exc}") from None
        try:
            data = await asyncio.wait_for(loop.sock_recv(sock, 65536), _remaining(deadline))
        except TimeoutError:
            raise _Failure("timeout", f"TLS handshake timed out after {received} bytes") from None
        except OSError as exc:
            raise _Failure("tls_handshake_failed", f"connection lost: {exc}") from None
        if not data:
            if not first:
                raise _Failure("tls_handshake_failed", "the server closed the connection without a TLS answer")
            if not _looks_like_tls(first):
                raise _Failure("not_tls", f"the server does not speak TLS (first bytes {first!r})")
            raise _Failure("tls_handshake_failed", "the server closed the connection during the handshake")
        if len(first) < 2:
            first = (first + data)[:2]
            if (len(first) == 2 or first[0] not in (0x15, 0x16)) and not _looks_like_tls(first):
                raise _Failure("not_tls", f"the server does not speak TLS (first bytes {data[:16]!r})")
        received += len(data)
        if received > MAX_HANDSHAKE_BYTES:
            raise _Failure("tls_handshake_failed", f"the handshake exceeded {MAX_HANDSHAKE_BYTES} bytes")
        conn.bio_write(data)
    return conn


def _ssl_message(exc: SSL.Error) -> str:
    try:
        parts = [str(item[2]) for item in exc.args[0] if len(item) > 2]
    except (IndexError, TypeError):
        parts = []
    return "TLS handshake failed: " + ("; ".join(parts) or type(exc).__name__)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


async def _open(
    address: str, port: int, *, protocol: str, sni: str, deadline: float, allow_private: bool, connect_timeout: float
) -> tuple[socket.socket, bytes]:
    try:
        sock = await netguard.connect_socket_async(
            address, port, timeout=min(connect_timeout, _remaining(deadline)), allow_private=allow_private
        )
    except netguard.TargetRefused as exc:
        raise _Failure("target_refused", str(exc)) from None
    except TimeoutError:
        raise _Failure("timeout", f"connecting to port {port} timed out") from None
    except OSError as exc:
        raise _Failure("connect_failed", f"cannot connect to port {port}: {exc.strerror or exc}") from None
    pending = b""
    if protocol != "tls":
        try:
            pending = await starttls(sock, protocol, sni, deadline)
        except TimeoutError:
            sock.close()
            raise _Failure("timeout", f"{protocol.upper()} STARTTLS dialogue timed out") from None
        except (StartTLSRefused, OSError, UnicodeError) as exc:
            sock.close()
            raise _Failure("not_tls", f"{protocol.upper()} STARTTLS failed: {exc}") from None
    return sock, pending


async def probe(
    address: str,
    port: int,
    *,
    sni: str,
    protocol: str = "tls",
    allow_private: bool = False,
    deadline_seconds: float = DEFAULT_DEADLINE,
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT,
    legacy_probe: bool = True,
    alternate_key: bool = False,
) -> Probe:
    """Probe one address; never raises for anything the server does.

    `alternate_key` also asks for the certificate of the other key family (RSA/ECDSA)."""
    started = time.monotonic()
    deadline = started + deadline_seconds
    result = Probe(address=address, port=port)
    sock: socket.socket | None = None
    try:
        sock, pending = await _open(
            address,
            port,
            protocol=protocol,
            sni=sni,
            deadline=deadline,
            allow_private=allow_private,
            connect_timeout=connect_timeout,
        )
        conn = await _handshake(sock, sni, deadline, legacy_only=False, pending=pending)
        result.tls_version = conn.get_protocol_version_name()
        result.cipher = conn.get_cipher_name() or ""
        chain = conn.get_peer_cert_chain(as_cryptography=True) or []
        if not chain:
            raise _Failure("no_certificate", "the server presented no certificate")
        if len(chain) > MAX_CHAIN:
            result.chain_truncated = True
            chain = chain[:MAX_CHAIN]
        from cryptography.hazmat.primitives.serialization import Encoding

        result.chain_der = [cert.public_bytes(Encoding.DER) for cert in chain]
    except _Failure as failure:
        result.error_code, result.error_message = failure.code, failure.message
    finally:
        if sock is not None:
            sock.close()
    if result.ok and (legacy_probe or result.tls_version in LEGACY_VERSIONS):
        # A server that speaks nothing newer is probed every time: it is why clients fail.
        highest = result.tls_version if result.tls_version in LEGACY_VERSIONS else ""
        result.legacy_versions = await _legacy(
            address, port, sni=sni, protocol=protocol, deadline=deadline, allow_private=allow_private, highest=highest
        )
    if result.ok and alternate_key and alternate_supported():
        result.alternate_probed = True
        result.alt_chain_der = await _alternate(
            address,
            port,
            sni=sni,
            protocol=protocol,
            deadline=deadline,
            allow_private=allow_private,
            primary=result.chain_der[0],
        )
    result.elapsed_ms = int((time.monotonic() - started) * 1000)
    return result


async def _second_handshake(
    address: str,
    port: int,
    *,
    sni: str,
    protocol: str,
    deadline: float,
    allow_private: bool,
    legacy_only: bool = False,
    family: str = "",
    tls10: bool = False,
) -> SSL.Connection | None:
    """Another connection to the same address with a narrower offer; None when it fails."""
    sock: socket.socket | None = None
    try:
        sock, pending = await _open(
            address,
            port,
            protocol=protocol,
            sni=sni,
            deadline=deadline,
            allow_private=allow_private,
            connect_timeout=DEFAULT_CONNECT_TIMEOUT,
        )
        return await _handshake(
            sock, sni, deadline, legacy_only=legacy_only, pending=pending, family=family, tls10=tls10
        )
    except _Failure:
        return None
    finally:
        if sock is not None:
            sock.close()


async def _legacy(
    address: str, port: int, *, sni: str, protocol: str, deadline: float, allow_private: bool, highest: str = ""
) -> list[str]:
    """Every legacy version (TLS 1.0, 1.1) the server accepts; [] when none or unknown.

    One handshake capped at TLS 1.1 finds the highest (skipped when the first handshake already
    ended there: `highest`); only a server that takes TLS 1.1 is asked about TLS 1.0 as well."""
    common = {"sni": sni, "protocol": protocol, "deadline": deadline, "allow_private": allow_private}
    if not highest:
        conn = await _second_handshake(address, port, legacy_only=True, **common)  # type: ignore[arg-type]
        highest = conn.get_protocol_version_name() if conn is not None else ""
    if highest not in LEGACY_NAMES:
        return []
    found = [LEGACY_NAMES[highest]]
    if highest == "TLSv1.1":
        conn = await _second_handshake(address, port, legacy_only=True, tls10=True, **common)  # type: ignore[arg-type]
        if conn is not None and conn.get_protocol_version_name() == "TLSv1":
            found.insert(0, LEGACY_NAMES["TLSv1"])
    return found


def key_family(der: bytes) -> str:
    """ "rsa", "ecdsa" (EC and EdDSA keys) or "" for a certificate's public key."""
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa

    try:
        key = x509.load_der_x509_certificate(der).public_key()
    except ValueError:
        return ""
    if isinstance(key, rsa.RSAPublicKey):
        return "rsa"
    if isinstance(key, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey | ed448.Ed448PublicKey):
        return "ecdsa"
    return ""


async def _alternate(
    address: str, port: int, *, sni: str, protocol: str, deadline: float, allow_private: bool, primary: bytes
) -> list[bytes]:
    """The chain of the other key family's certificate, if the server holds one; [] otherwise."""
    wanted = {"rsa": "ecdsa", "ecdsa": "rsa"}.get(key_family(primary), "")
    if not wanted:
        return []
    conn = await _second_handshake(
        address, port, sni=sni, protocol=protocol, deadline=deadline, allow_private=allow_private, family=wanted
    )
    if conn is None:
        return []  # no certificate of that family: the usual answer
    from cryptography.hazmat.primitives.serialization import Encoding

    chain = conn.get_peer_cert_chain(as_cryptography=True) or []
    ders = [cert.public_bytes(Encoding.DER) for cert in chain[:MAX_CHAIN]]
    if not ders or ders[0] == primary or key_family(ders[0]) != wanted:
        return []  # a server that ignores the offer and sends its only certificate again
    return ders


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from synchronous code, even when this thread already
    runs an event loop (an async caller, a browser driver): then on a short-lived thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()


def probe_sync(address: str, port: int, **kwargs: object) -> Probe:
    """`probe` for callers without a loop (spot checks from the shell)."""
    return run_sync(probe(address, port, **kwargs))  # type: ignore[arg-type]
