"""Lab servers: TLS endpoints, STARTTLS dialogues and hostile servers on 127.0.0.x.

One asyncio loop in a daemon thread serves every endpoint of a `Lab`. Each endpoint keeps a
mutable SSL context, so a test can swap the served certificate (`Endpoint.serve(...)`) and see
`certificate_changed` on the next scan.

    with Lab() as lab:
        ep = lab.tls(lab.leaf(["valid.keychest.test"]))
        ... scan 127.0.0.1:ep.port ...
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import threading
import warnings
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from lab.pki import CA, Issued, temp_folder

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]

LDAP_STARTTLS_OID = b"1.3.6.1.4.1.1466.20037"


def server_context(
    issued: Issued, folder: Any, stem: str, *, legacy: bool = False, max_version: str = "", **chain: bool
) -> ssl.SSLContext:
    """`legacy` also accepts TLS 1.0 and 1.1; `max_version` ("TLSv1", "TLSv1_1") accepts nothing
    newer (a server only current clients can no longer reach)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    # Weak keys and SHA-1 signatures are lab scenarios: let OpenSSL load and serve them.
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    if legacy or max_version:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            ctx.minimum_version = ssl.TLSVersion.TLSv1
            if max_version:
                ctx.maximum_version = ssl.TLSVersion[max_version]
    cert_path, key_path = issued.write(folder, stem, **chain)
    ctx.load_cert_chain(cert_path, key_path)
    return ctx


@dataclass
class Endpoint:
    """A listening lab endpoint: its addresses (one or more 127.0.0.x), port, and behaviour."""

    hosts: list[str]
    port: int
    kind: str
    context: ssl.SSLContext | None = None
    # Per-address contexts: one endpoint, different certificates on different addresses.
    contexts: dict[str, ssl.SSLContext] = field(default_factory=dict)
    servers: list[asyncio.base_events.Server] = field(default_factory=list)
    issued: Issued | None = None
    lab: Lab | None = None
    # HTTP request heads received by `Lab.https` endpoints, oldest first.
    requests: list[bytes] = field(default_factory=list)

    @property
    def host(self) -> str:
        return self.hosts[0]

    def serve(
        self, issued: Issued, *, host: str | None = None, legacy: bool = False, max_version: str = "", **chain: bool
    ) -> None:
        """Serve another certificate from now on (new connections only), on one address or all."""
        assert self.lab is not None
        context = server_context(
            issued,
            self.lab.folder,
            f"{self.kind}-{self.port}-{id(issued)}",
            legacy=legacy,
            max_version=max_version,
            **chain,
        )
        if host is None:
            self.issued = issued
            self.context = context
            self.contexts.clear()
        else:
            self.contexts[host] = context

    def also_serve(self, issued: Issued, **chain: bool) -> None:
        """Serve a certificate of the other key type beside the current one (RSA + ECDSA): the
        TLS library picks one per connection by what the client offers."""
        assert self.lab is not None and self.context is not None
        cert_path, key_path = issued.write(self.lab.folder, f"{self.kind}-{self.port}-alt-{id(issued)}", **chain)
        self.context.load_cert_chain(cert_path, key_path)

    def context_for(self, writer: asyncio.StreamWriter) -> ssl.SSLContext:
        local = writer.get_extra_info("sockname")
        if local and local[0] in self.contexts:
            return self.contexts[local[0]]
        assert self.context is not None
        return self.context


class Lab:
    """A private CA (root + intermediate) and a loop serving endpoints until `stop()`."""

    def __init__(self) -> None:
        self.folder = temp_folder()
        self.root = CA("KeyChest Lab Root")
        self.intermediate = self.root.intermediate("KeyChest Lab Intermediate")
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="keychest-lab", daemon=True)
        self._thread.start()
        self.endpoints: list[Endpoint] = []
        self._tasks: set[asyncio.Task[None]] = set()

    # --- life cycle -------------------------------------------------------------------------
    def stop(self) -> None:
        async def close_all() -> None:
            for endpoint in self.endpoints:
                for server in endpoint.servers:
                    server.close()
            for task in list(self._tasks):
                task.cancel()

        with contextlib.suppress(Exception):
            asyncio.run_coroutine_threadsafe(close_all(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)

    def __enter__(self) -> Lab:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def run(self, coro: Awaitable[Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(30)  # type: ignore[arg-type]

    # --- certificates -----------------------------------------------------------------------
    def leaf(self, names: list[str], **kwargs: Any) -> Issued:
        """A leaf from the lab intermediate (kwargs as `CA.issue`)."""
        return self.intermediate.issue(names, **kwargs)

    @property
    def root_pem(self) -> str:
        return self.root.pem

    # --- endpoints --------------------------------------------------------------------------
    def _listen(self, hosts: list[str], handler: Handler, kind: str, port: int = 0) -> Endpoint:
        """Listen on every host at one common port (the first free one all hosts accept)."""

        async def wrapped(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            self._tasks.add(task)  # type: ignore[arg-type]
            try:
                await handler(reader, writer)
            except (OSError, asyncio.IncompleteReadError, ssl.SSLError, asyncio.CancelledError, TimeoutError):
                pass
            finally:
                self._tasks.discard(task)  # type: ignore[arg-type]
                with contextlib.suppress(Exception):
                    writer.close()

        async def bind() -> Endpoint:
            for _attempt in range(20):
                servers: list[asyncio.base_events.Server] = []
                chosen = port
                try:
                    for host in hosts:
                        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
                        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                        sock.bind((host, chosen))
                        chosen = sock.getsockname()[1]
                        sock.listen(1024)
                        servers.append(await asyncio.start_server(wrapped, sock=sock, limit=65536))
                    return Endpoint(hosts=list(hosts), port=chosen, kind=kind, servers=servers, lab=self)
                except OSError:
                    for server in servers:
                        server.close()
                    if port:
                        raise
            raise OSError("no common free port for the lab endpoint")

        endpoint = self.run(bind())
        self.endpoints.append(endpoint)
        return endpoint

    def tls(
        self,
        issued: Issued,
        *,
        hosts: list[str] | None = None,
        legacy: bool = False,
        max_version: str = "",
        include_intermediates: bool = True,
        include_root: bool = False,
        extra: list[Issued] | None = None,
    ) -> Endpoint:
        """Implicit TLS presenting `issued` (leaf + intermediates unless told otherwise).

        `extra` certificates are appended to the presented chain (an over-long chain).
        """
        holder: dict[str, Endpoint] = {}

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            endpoint = holder["endpoint"]
            await writer.start_tls(endpoint.context_for(writer))
            await asyncio.wait_for(reader.read(1), 10)

        endpoint = self._listen(hosts or ["127.0.0.1"], handle, "tls")
        holder["endpoint"] = endpoint
        endpoint.issued = issued
        if extra:
            issued = Issued(cert=issued.cert, key=issued.key, parents=[*issued.parents[:-1], *[e.cert for e in extra]])
        endpoint.context = server_context(
            issued,
            self.folder,
            f"tls-{endpoint.port}",
            legacy=legacy,
            max_version=max_version,
            include_intermediates=include_intermediates,
            include_root=include_root,
        )
        return endpoint

    def https(self, issued: Issued, *, hsts: str | None = None, answer: str = "normal") -> Endpoint:
        """HTTPS that answers any request with 200 and, when given, this Strict-Transport-Security
        value. `answer="silent"` never answers HTTP; `answer="trickle"` sends a header byte by byte
        forever (after a TLS handshake that succeeds either way)."""
        holder: dict[str, Endpoint] = {}

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            endpoint = holder["endpoint"]
            await writer.start_tls(endpoint.context_for(writer))
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            endpoint.requests.append(head)
            if answer == "silent":
                await asyncio.sleep(60)
            elif answer == "trickle":
                writer.write(b"HTTP/1.1 200 OK\r\nX-Slow: ")
                for _ in range(100_000):
                    writer.write(b"a")
                    await writer.drain()
                    await asyncio.sleep(0.05)
            else:
                extra = f"Strict-Transport-Security: {hsts}\r\n".encode() if hsts is not None else b""
                writer.write(b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: 0\r\nConnection: close\r\n\r\n")
                await writer.drain()

        endpoint = self._listen(["127.0.0.1"], handle, "https")
        holder["endpoint"] = endpoint
        endpoint.issued = issued
        endpoint.context = server_context(issued, self.folder, f"https-{endpoint.port}")
        return endpoint

    def starttls(
        self, protocol: str, issued: Issued, *, hosts: list[str] | None = None, offer: bool = True
    ) -> Endpoint:
        """A plaintext server of `protocol` that upgrades with STARTTLS (or refuses: offer=False)."""
        holder: dict[str, Endpoint] = {}
        dialogue = _DIALOGUES[protocol]

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            if await dialogue(reader, writer, offer):
                await writer.start_tls(holder["endpoint"].context_for(writer))
                await asyncio.wait_for(reader.read(1), 10)

        endpoint = self._listen(hosts or ["127.0.0.1"], handle, protocol)
        holder["endpoint"] = endpoint
        endpoint.issued = issued
        endpoint.context = server_context(issued, self.folder, f"{protocol}-{endpoint.port}")
        return endpoint

    def anonymous(self, host: str = "127.0.0.1") -> Endpoint:
        """TLS 1.2 with an anonymous (aNULL) cipher: a handshake without any certificate."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
        ctx.set_ciphers("aNULL:@SECLEVEL=0")

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await writer.start_tls(ctx)
            await asyncio.wait_for(reader.read(1), 10)

        return self._listen([host], handle, "anonymous")

    def silent(self, host: str = "127.0.0.1") -> Endpoint:
        """Accepts and never says a word."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await asyncio.sleep(60)

        return self._listen([host], handle, "silent")

    def trickle(self, host: str = "127.0.0.1", *, interval: float = 0.2) -> Endpoint:
        """Answers a TLS hello one byte at a time, forever (a TLS-looking record that never ends)."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            payload = b"\x16\x03\x03\x40\x00" + os.urandom(16384)
            for byte in payload:
                writer.write(bytes([byte]))
                await writer.drain()
                await asyncio.sleep(interval)

        return self._listen([host], handle, "trickle")

    def flood(self, host: str = "127.0.0.1") -> Endpoint:
        """Answers with TLS handshake records that never end (an endless chain, as fast as it can)."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(1)
            # A ServerHello-looking record header, then 16 KiB handshake records for ever.
            for _ in range(10_000):
                writer.write(b"\x16\x03\x03\x40\x00" + b"\x0b" + os.urandom(16383))
                await writer.drain()

        return self._listen([host], handle, "flood")

    def banner(self, text: bytes = b"SSH-2.0-OpenSSH_9.6 lab\r\n", host: str = "127.0.0.1") -> Endpoint:
        """A non-TLS service: says its banner and waits."""

        async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            writer.write(text)
            await writer.drain()
            await asyncio.wait_for(reader.read(100), 10)

        return self._listen([host], handle, "banner")

    def closed_port(self, host: str = "127.0.0.1") -> int:
        """A port nothing listens on (bound then closed)."""
        sock = socket.socket()
        sock.bind((host, 0))
        port = sock.getsockname()[1]
        sock.close()
        return port


# --- STARTTLS dialogues (server side); each returns True when TLS should start ----------------
async def _line(reader: asyncio.StreamReader) -> bytes:
    return await asyncio.wait_for(reader.readline(), 10)


async def _smtp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, offer: bool) -> bool:
    writer.write(b"220-lab.keychest.test ESMTP lab\r\n220 ready\r\n")
    while True:
        line = (await _line(reader)).strip().upper()
        if not line:
            return False
        if line.startswith((b"EHLO", b"HELO")):
            caps = b"250-lab.keychest.test\r\n250-SIZE 1000000\r\n" + (
                b"250 STARTTLS\r\n" if offer else b"250 8BITMIME\r\n"
            )
            writer.write(caps)
        elif line == b"STARTTLS" and offer:
            writer.write(b"220 2.0.0 Ready to start TLS\r\n")
            await writer.drain()
            return True
        elif line == b"QUIT":
            writer.write(b"221 bye\r\n")
            return False
        else:
            writer.write(b"502 5.5.1 not here\r\n")


async def _imap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, offer: bool) -> bool:
    caps = b"IMAP4rev1 STARTTLS LOGINDISABLED" if offer else b"IMAP4rev1"
    writer.write(b"* OK [CAPABILITY " + caps + b"] lab ready\r\n")
    while True:
        line = (await _line(reader)).strip()
        if not line:
            return False
        tag, _, command = line.partition(b" ")
        if command.upper() == b"CAPABILITY":
            writer.write(b"* CAPABILITY " + caps + b"\r\n" + tag + b" OK done\r\n")
        elif command.upper() == b"STARTTLS" and offer:
            writer.write(tag + b" OK Begin TLS negotiation now\r\n")
            await writer.drain()
            return True
        else:
            writer.write(tag + b" BAD unknown\r\n")


async def _pop3(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, offer: bool) -> bool:
    writer.write(b"+OK lab POP3 ready\r\n")
    while True:
        line = (await _line(reader)).strip().upper()
        if not line:
            return False
        if line == b"STLS" and offer:
            writer.write(b"+OK Begin TLS\r\n")
            await writer.drain()
            return True
        if line == b"CAPA":
            writer.write(b"+OK\r\nUSER\r\n" + (b"STLS\r\n" if offer else b"") + b".\r\n")
        else:
            writer.write(b"-ERR unknown\r\n")


async def _ftp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, offer: bool) -> bool:
    writer.write(b"220-lab FTP\r\n220 ready\r\n")
    while True:
        line = (await _line(reader)).strip().upper()
        if not line:
            return False
        if line in (b"AUTH TLS", b"AUTH SSL") and offer:
            writer.write(b"234 AUTH TLS ok\r\n")
            await writer.drain()
            return True
        writer.write(b"500 unknown\r\n")


async def _postgres(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, offer: bool) -> bool:
    request = await asyncio.wait_for(reader.readexactly(8), 10)
    if request != b"\x00\x00\x00\x08\x04\xd2\x16\x2f":
        return False
    writer.write(b"S" if offer else b"N")
    await writer.drain()
    return offer


async def _ldap(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, offer: bool) -> bool:
    head = await asyncio.wait_for(reader.readexactly(2), 10)
    body = await asyncio.wait_for(reader.readexactly(head[1]), 10)
    if LDAP_STARTTLS_OID not in body:
        return False
    code = 0 if offer else 2  # success / protocolError
    oid = b"\x8a" + bytes([len(LDAP_STARTTLS_OID)]) + LDAP_STARTTLS_OID
    result = b"\x0a\x01" + bytes([code]) + b"\x04\x00\x04\x00" + oid
    op = b"\x78" + bytes([len(result)]) + result
    message = b"\x02\x01\x01" + op
    writer.write(b"\x30" + bytes([len(message)]) + message)
    await writer.drain()
    return offer


async def _xmpp(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, offer: bool) -> bool:
    await asyncio.wait_for(reader.readuntil(b">"), 10)  # <?xml ...?>
    opening = await asyncio.wait_for(reader.readuntil(b">"), 10)
    if b"stream" not in opening:
        await asyncio.wait_for(reader.readuntil(b">"), 10)
    features = (
        b"<stream:features><starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'><required/></starttls></stream:features>"
        if offer
        else b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/></stream:features>"
    )
    writer.write(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' id='lab' from='lab.keychest.test' version='1.0'>" + features
    )
    await writer.drain()
    if not offer:
        return False
    request = await asyncio.wait_for(reader.readuntil(b">"), 10)
    if b"starttls" not in request:
        return False
    writer.write(b"<proceed xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await writer.drain()
    return True


_DIALOGUES: dict[str, Callable[[asyncio.StreamReader, asyncio.StreamWriter, bool], Awaitable[bool]]] = {
    "smtp": _smtp,
    "imap": _imap,
    "pop3": _pop3,
    "ftp": _ftp,
    "postgres": _postgres,
    "ldap": _ldap,
    "xmpp": _xmpp,
}
