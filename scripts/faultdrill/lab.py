"""The fault drill's private PostgreSQL and Redis, and the lab: TLS servers, DNS, CT log, SMTP sink
and webhook receiver (issue 21)."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import subprocess
import threading
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from faultdrill.common import DOMAIN, _connects, free_port, wait_until


# --- private PostgreSQL and Redis -----------------------------------------------------------------
class Postgres:
    """A PostgreSQL cluster of the drill's own (initdb into a temporary folder, a private port)."""

    def __init__(self, root: Path) -> None:
        found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
        if not found and not shutil.which("initdb"):
            raise SystemExit("the drill needs PostgreSQL's initdb (Debian: apt-get install postgresql)")
        self.bin = Path(found[-1]).parent if found else Path(shutil.which("initdb") or "").parent
        self.data = root / "pg"
        self.port = free_port()
        self.log = root / "pg.log"
        self.socket_dir = root
        self.user = "postgres"
        self.run_as: list[str] = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root: the cluster belongs to a plain user
            self.run_as = ["runuser", "-u", "postgres", "--"]
            subprocess.run(["chown", "-R", "postgres", str(root)], check=True)  # noqa: S603, S607
            root.chmod(0o755)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run([*self.run_as, *args], check=check, capture_output=True)  # noqa: S603

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-U", self.user, "--auth=trust", "-E", "UTF8")
        self.start()
        self._run(str(self.bin / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "keychest")

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.socket_dir} -c listen_addresses=127.0.0.1 -c max_connections=200 -c fsync=off"
        )
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", str(self.log), "-w", "start")

    def stop(self, mode: str = "fast") -> None:
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    @property
    def url(self) -> str:
        return f"postgres://{self.user}@127.0.0.1:{self.port}/keychest"


class Redis:
    """A Redis server of the drill's own on a private port, without persistence (a restart loses all)."""

    def __init__(self, root: Path) -> None:
        if not shutil.which("redis-server"):
            raise SystemExit("the drill needs redis-server (Debian: apt-get install redis-server)")
        self.port = free_port()
        self.root = root
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        self.process = subprocess.Popen(  # noqa: S603
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],  # noqa: S607
            cwd=self.root,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(lambda: _connects(self.port), 10, 0.1)

    def stop(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


# --- the lab --------------------------------------------------------------------------------------
class Webhook:
    """The webhook receiver: records every POST; `hang` makes it hold requests without answering."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        self.started = 0  # requests begun (a kill mid delivery happens while one is held)
        self.hang = threading.Event()
        self.delay = 0.0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.started += 1
                if receiver.hang.is_set():
                    time.sleep(120)
                    return
                if receiver.delay:
                    time.sleep(receiver.delay)
                with receiver.lock:
                    try:
                        receiver.received.append(json.loads(body))
                    except ValueError:
                        receiver.received.append({"raw": body[:200].decode(errors="replace")})
                try:
                    self.send_response(200)
                    self.send_header("Content-Length", "2")
                    self.end_headers()
                    self.wfile.write(b"ok")
                except (BrokenPipeError, ConnectionResetError):
                    return  # the sender was killed while the receiver held its request: the drill's point

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def event_counts(self) -> Counter[str]:
        """Receipts per event idempotency key (a receiver drops repeats by it)."""
        with self.lock:
            return Counter(e["idempotency_key"] for doc in self.received for e in doc.get("events", []))

    def subjects(self) -> Counter[str]:
        with self.lock:
            return Counter(e["subject"] for doc in self.received for e in doc.get("events", []))

    def received_events(self) -> list[tuple[str, str]]:
        """(idempotency_key, subject) of every event received, repeats included."""
        with self.lock:
            return [(e["idempotency_key"], e["subject"]) for doc in self.received for e in doc.get("events", [])]


class SmtpSink:
    """An aiosmtpd SMTP server that keeps every message; `down()` stops it (connection refused)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.messages: list[tuple[list[str], str]] = []
        self.lock = threading.Lock()
        self.delay = 0.0
        self.started = 0
        self.controller: Any = None

    def up(self) -> None:
        from aiosmtpd.controller import Controller

        sink = self

        class Handler:
            async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
                with sink.lock:
                    sink.started += 1
                if sink.delay:
                    import asyncio

                    await asyncio.sleep(sink.delay)
                with sink.lock:
                    sink.messages.append((list(envelope.rcpt_tos), envelope.content.decode("utf-8", "replace")))
                return "250 OK"

        self.controller = Controller(Handler(), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def down(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    def to(self, address: str) -> list[str]:
        with self.lock:
            return [text for rcpt, text in self.messages if address in rcpt]

    def copies(self, address: str) -> list[tuple[str, str]]:
        """(Message-ID, decoded text) of every message to `address`."""
        import email
        from email import policy

        out = []
        for text in self.to(address):
            message = email.message_from_string(text, policy=policy.default)
            parts = [p.get_content() for p in message.walk() if p.get_content_type() == "text/plain"]
            out.append((str(message["Message-ID"]), "\n".join(str(p) for p in parts)))
        return out

    def link(self, pattern: str) -> str | None:
        with self.lock:
            texts = [text for _, text in self.messages]
        for text in reversed(texts):
            unfolded = text.replace("=\r\n", "").replace("=\n", "").replace("=3D", "=")
            found = re.search(pattern, unfolded)
            if found:
                return found.group(0)
        return None


@dataclass
class Lab:
    tls: Any
    dns: Any
    ctlog: Any
    smtp: SmtpSink
    webhook: Webhook
    log_list: Path
    targets: list[str] = field(default_factory=list)  # host:port lines for the bulk add
    slow: list[str] = field(default_factory=list)  # hosts whose scans take the whole deadline
    ports: dict[str, int] = field(default_factory=dict)  # host -> port
    addresses: dict[str, str] = field(default_factory=dict)  # host -> 127.0.0.x
    ct_names: list[str] = field(default_factory=list)

    def stop(self) -> None:
        for part in (self.ctlog, self.dns, self.tls):
            with contextlib.suppress(Exception):
                part.stop()
        self.smtp.down()
        self.webhook.server.shutdown()


async def _hold_silently(reader: Any, writer: Any) -> None:
    """Read what the client sends, never answer, and notice when it goes (a killed scanner's
    connection closes at once, so it does not count as a scan still in flight)."""
    while await reader.read(4096):
        pass


def lab_start(root: Path, servers: int, slow: int) -> Lab:
    from lab.ctlog.server import LocalCTLog, write_log_list
    from lab.dns import LabDNS
    from lab.tls import Lab as TLSLab

    tls = TLSLab()
    dns = LabDNS().start()
    ctlog = LocalCTLog(description="KeyChest drill CT log").start()
    ctlog.add_random(50)
    ctlog.publish()
    listing = write_log_list(root / "ct-log-list.json", [ctlog])
    running = Lab(tls=tls, dns=dns, ctlog=ctlog, smtp=SmtpSink(), webhook=Webhook(), log_list=listing)
    running.smtp.up()
    for index in range(servers):
        host = f"s{index}.{DOMAIN}"
        address = f"127.0.0.{2 + index % 200}"
        dns.set(host, [address])
        running.addresses[host] = address
        if index < slow:
            endpoint = tls._listen([address], _hold_silently, "silent")  # every scan of it waits its deadline
            running.slow.append(host)
        else:
            endpoint = tls.tls(tls.leaf([host]), hosts=[address])
        running.ports[host] = endpoint.port
        running.targets.append(f"{host}:{endpoint.port}")
    return running


def _count_connections(lab_class: Any) -> None:
    """Wrap the lab's endpoint handler so each Lab counts open connections per port."""
    original = lab_class._listen

    def _listen(self: Any, hosts: list[str], handler: Any, kind: str, port: int = 0) -> Any:
        if not hasattr(self, "open"):
            self.open = Counter()
            self.most_open = Counter()

        async def counted(reader: Any, writer: Any) -> None:
            key = tuple(writer.get_extra_info("sockname")[:2])  # (address, port): ports repeat across addresses
            self.open[key] += 1
            self.most_open[key] = max(self.most_open[key], self.open[key])
            peer = writer.get_extra_info("peername")
            if not hasattr(self, "peers"):
                self.peers = defaultdict(dict)
            self.peers[key][peer] = time.strftime("%H:%M:%S")
            if self.open[key] > 1 and len(getattr(self, "overlaps", [])) < 20:
                held = sorted(self.peers[key].items(), key=lambda item: item[1])
                self.overlaps = [*getattr(self, "overlaps", []), (time.strftime("%H:%M:%S"), kind, key, held)]
            try:
                await handler(reader, writer)
            finally:
                self.open[key] -= 1
                self.peers[key].pop(peer, None)

        return original(self, hosts, counted, kind, port)

    lab_class._listen = _listen
