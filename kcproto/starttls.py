"""Client side of the STARTTLS dialogues: bring a plaintext connection to the point where TLS starts.

Pure protocol code (no Django). Every read is capped in size and bounded by the caller's
deadline; a server that does not offer STARTTLS raises `StartTLSRefused`.
"""

from __future__ import annotations

import asyncio
import socket
import time

MAX_REPLY = 16 * 1024
LDAP_STARTTLS = bytes.fromhex("301d02010177188016") + b"1.3.6.1.4.1.1466.20037"
POSTGRES_SSLREQUEST = b"\x00\x00\x00\x08\x04\xd2\x16\x2f"


class StartTLSRefused(Exception):
    """The server answered, but not with an offer to start TLS."""


class Conversation:
    """Reads and writes on a non-blocking socket with one deadline and a byte cap."""

    def __init__(self, sock: socket.socket, deadline: float) -> None:
        self.sock = sock
        self.deadline = deadline
        self.buffer = b""
        self.read_total = 0
        self.loop = asyncio.get_running_loop()

    def _remaining(self) -> float:
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("deadline reached during STARTTLS")
        return remaining

    async def send(self, data: bytes) -> None:
        await asyncio.wait_for(self.loop.sock_sendall(self.sock, data), self._remaining())

    async def _fill(self) -> None:
        chunk = await asyncio.wait_for(self.loop.sock_recv(self.sock, 4096), self._remaining())
        if not chunk:
            raise StartTLSRefused("connection closed during STARTTLS")
        self.read_total += len(chunk)
        if self.read_total > MAX_REPLY:
            raise StartTLSRefused("server talked too much before STARTTLS")
        self.buffer += chunk

    async def line(self) -> bytes:
        while b"\n" not in self.buffer:
            await self._fill()
        line, _, self.buffer = self.buffer.partition(b"\n")
        return line.rstrip(b"\r")

    async def exactly(self, count: int) -> bytes:
        while len(self.buffer) < count:
            await self._fill()
        data, self.buffer = self.buffer[:count], self.buffer[count:]
        return data

    async def until(self, marker: bytes) -> bytes:
        while marker not in self.buffer:
            await self._fill()
        data, _, self.buffer = self.buffer.partition(marker)
        return data + marker

    async def reply(self) -> tuple[int, list[bytes]]:
        """A numbered multi-line reply (SMTP, FTP): `250-...` lines up to `250 ...`."""
        lines: list[bytes] = []
        while True:
            line = await self.line()
            lines.append(line)
            if len(line) < 3 or not line[:3].isdigit():
                raise StartTLSRefused(f"unexpected reply {line[:60]!r}")
            if len(line) == 3 or line[3:4] != b"-":
                return int(line[:3]), lines


async def _smtp(c: Conversation, host: str) -> None:
    code, _ = await c.reply()
    if code != 220:
        raise StartTLSRefused(f"SMTP greeting {code}")
    await c.send(b"EHLO keychest.invalid\r\n")
    code, lines = await c.reply()
    if code != 250 or not any(line[4:].strip().upper().startswith(b"STARTTLS") for line in lines):
        raise StartTLSRefused("SMTP server does not offer STARTTLS")
    await c.send(b"STARTTLS\r\n")
    code, _ = await c.reply()
    if code != 220:
        raise StartTLSRefused(f"SMTP STARTTLS answered {code}")


async def _imap(c: Conversation, host: str) -> None:
    greeting = await c.line()
    if not greeting.upper().startswith(b"* OK"):
        raise StartTLSRefused("IMAP greeting is not OK")
    await c.send(b"kc1 STARTTLS\r\n")
    while True:
        line = await c.line()
        if line.startswith(b"kc1 "):
            if not line[4:].upper().startswith(b"OK"):
                raise StartTLSRefused("IMAP server refused STARTTLS")
            return


async def _pop3(c: Conversation, host: str) -> None:
    if not (await c.line()).startswith(b"+OK"):
        raise StartTLSRefused("POP3 greeting is not +OK")
    await c.send(b"STLS\r\n")
    if not (await c.line()).startswith(b"+OK"):
        raise StartTLSRefused("POP3 server refused STLS")


async def _ftp(c: Conversation, host: str) -> None:
    code, _ = await c.reply()
    if code != 220:
        raise StartTLSRefused(f"FTP greeting {code}")
    await c.send(b"AUTH TLS\r\n")
    code, _ = await c.reply()
    if code != 234:
        raise StartTLSRefused(f"FTP AUTH TLS answered {code}")


async def _postgres(c: Conversation, host: str) -> None:
    await c.send(POSTGRES_SSLREQUEST)
    answer = await c.exactly(1)
    if answer != b"S":
        raise StartTLSRefused("PostgreSQL server does not accept SSL")


async def _ldap(c: Conversation, host: str) -> None:
    await c.send(LDAP_STARTTLS)
    head = await c.exactly(2)
    if head[0] != 0x30:
        raise StartTLSRefused("not an LDAP reply")
    length = head[1]
    if length & 0x80:  # long form length
        size = length & 0x7F
        if size > 3:
            raise StartTLSRefused("LDAP reply too large")
        length = int.from_bytes(await c.exactly(size), "big")
    if length > MAX_REPLY:
        raise StartTLSRefused("LDAP reply too large")
    body = await c.exactly(length)
    # messageID, then ExtendedResponse [APPLICATION 24] whose first element is the resultCode.
    marker = body.find(b"\x78")
    if marker < 0 or body[marker + 2 : marker + 4] != b"\x0a\x01":
        raise StartTLSRefused("LDAP reply is not an extended response")
    if body[marker + 4] != 0:
        raise StartTLSRefused(f"LDAP StartTLS result code {body[marker + 4]}")


async def _xmpp(c: Conversation, host: str) -> None:
    await c.send(
        b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
        b"xmlns:stream='http://etherx.jabber.org/streams' to='" + host.encode("idna") + b"' version='1.0'>"
    )
    features = await c.until(b"</stream:features>")
    if b"urn:ietf:params:xml:ns:xmpp-tls" not in features:
        raise StartTLSRefused("XMPP server does not offer STARTTLS")
    await c.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    answer = await c.until(b">")
    if b"proceed" not in answer:
        raise StartTLSRefused("XMPP server refused STARTTLS")


DIALOGUES = {
    "smtp": _smtp,
    "imap": _imap,
    "pop3": _pop3,
    "ftp": _ftp,
    "postgres": _postgres,
    "ldap": _ldap,
    "xmpp": _xmpp,
}


async def starttls(sock: socket.socket, protocol: str, host: str, deadline: float) -> bytes:
    """Run the dialogue; returns bytes already read past it (none, for well-behaved servers)."""
    conversation = Conversation(sock, deadline)
    await DIALOGUES[protocol](conversation, host)
    return conversation.buffer
