"""`make faults`: run the whole KeyChest stack on this machine, inject faults while work is in
flight, count what was lost or doubled, and write docs/reliability.md (issue 21).

The drill starts its own PostgreSQL cluster (`initdb` into a temporary folder) and Redis server on
private ports, never the machine's shared ones; the lab (TLS servers on 127.0.0.x, lab DNS, a lab
CT log, an aiosmtpd SMTP sink, a webhook receiver) in this process; and the product: gunicorn,
two Celery workers, beat and the CT follower (`manage.py ct_ingest --follow`). A team, its
servers, a watched domain and two channels (email, webhook) are set up through the public API
and pages, as a user would. Then each fault is injected while scans, CT ingestion and deliveries
run, and the outcome is checked once the stack is left alone. Load (concurrent API clients) and
a soak (RSS of every process each minute) run last.

    make faults                                   # the full drill (about an hour)
    python scripts/fault_drill.py --quick         # the CI drill: one fault of each kind, small lab
    python scripts/fault_drill.py --only worker_scan,redis --no-write

Nothing leaves 127.0.0.0/8. Exit status 0 when every row holds.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import glob
import json
import logging
import os
import re
import secrets
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

BASE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(BASE))
PYTHON = sys.executable
DOMAIN = "drill.keychest.test"
EMAIL = "owner@drill.keychest.test"
PASSWORD = "drill-Password-2026!"  # noqa: S105 - a throwaway account in a throwaway database
ALERTS_TO = EMAIL  # the email channel mails the team's members: the owner


logging.getLogger("mail.log").setLevel(logging.WARNING)  # aiosmtpd's per-command chatter


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until(condition: Callable[[], object], timeout: float, every: float = 0.5) -> float | None:
    """Seconds until `condition()` held, or None if it did not within `timeout`."""
    started = time.monotonic()
    last = ""
    while time.monotonic() - started < timeout:
        try:
            if condition():
                return time.monotonic() - started
        except Exception as error:  # noqa: BLE001 - a service being restarted: keep polling
            if str(error) != last:
                last = str(error)
                log(f"  (still waiting: {type(error).__name__}: {last[:200]})")
        time.sleep(every)
    return None


def _connects(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=1):
        return True


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
                self.send_response(200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

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


# --- the product's processes ----------------------------------------------------------------------
@dataclass
class Proc:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes] | None = None


class Stack:
    """gunicorn, two Celery workers, beat and the CT follower, each in its own process group."""

    def __init__(self, root: Path, env: dict[str, str], web_port: int) -> None:
        self.root = root
        self.env = env
        self.web_port = web_port
        celery = [PYTHON, "-m", "celery", "-A", "keychest"]
        self.procs = {
            "web": Proc(
                "web",
                [
                    PYTHON,
                    "-m",
                    "gunicorn",
                    "-c",
                    "gunicorn.conf.py",
                    "-b",
                    f"127.0.0.1:{web_port}",
                    "-w",
                    "2",
                    "keychest.wsgi",
                ],
            ),
            "worker1": Proc("worker1", [*celery, "worker", "-n", "w1@drill", "-c", "2", "-l", "info"]),
            "worker2": Proc("worker2", [*celery, "worker", "-n", "w2@drill", "-c", "2", "-l", "info"]),
            "beat": Proc("beat", [*celery, "beat", "-l", "info", "--pidfile=", "-s", str(root / "beat-schedule")]),
            "ct": Proc("ct", [PYTHON, "manage.py", "ct_ingest", "--follow"]),
        }

    def supervise(self) -> None:
        """Restart a process that exits by itself, as compose's `restart: unless-stopped` does
        (a process the drill kills is restarted by the drill, when the fault says)."""
        self.restarts: Counter[str] = Counter()
        self.supervising = True

        def loop() -> None:
            while self.supervising:
                for name, proc in list(self.procs.items()):
                    if self.supervising and proc.process is not None and proc.process.poll() is not None:
                        log(f"  ({name} exited with {proc.process.returncode}; restarted by the supervisor)")
                        self.restarts[name] += 1
                        self.start(name)
                time.sleep(1)

        threading.Thread(target=loop, daemon=True).start()

    def start(self, name: str) -> None:
        proc = self.procs[name]
        logfile = open(self.root / f"{name}.log", "ab")  # noqa: SIM115 - owned by the child
        proc.process = subprocess.Popen(  # noqa: S603
            proc.argv, cwd=BASE, env=self.env, stdout=logfile, stderr=subprocess.STDOUT, start_new_session=True
        )

    def kill(self, name: str) -> None:
        """SIGKILL the process and its children (a Celery worker's pool processes too)."""
        proc = self.procs[name]
        if proc.process is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.process.pid, signal.SIGKILL)
            proc.process.wait()
            proc.process = None

    def stop_all(self) -> None:
        self.supervising = False
        for proc in self.procs.values():
            if proc.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.process.pid, signal.SIGTERM)
        for proc in self.procs.values():
            if proc.process is not None:
                try:
                    proc.process.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    with contextlib.suppress(ProcessLookupError):
                        os.killpg(proc.process.pid, signal.SIGKILL)
                proc.process = None

    def remote_ports(self, name: str) -> set[int]:
        """The remote ports of the TCP connections the process (and its children) hold open."""
        proc = self.procs[name]
        if proc.process is None:
            return set()
        inodes: set[str] = set()
        for pid in _group_pids(proc.process.pid):
            with contextlib.suppress(OSError):
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    with contextlib.suppress(OSError):
                        target = os.readlink(fd)
                        if target.startswith("socket:["):
                            inodes.add(target[8:-1])
        ports: set[int] = set()
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            parts = line.split()
            if parts[9] in inodes:
                ports.add(int(parts[2].split(":")[1], 16))
        return ports

    def alive(self) -> dict[str, bool]:
        return {n: p.process is not None and p.process.poll() is None for n, p in self.procs.items()}

    def rss_kib(self) -> dict[str, int]:
        """Resident memory of each process with its children (a worker's pool, gunicorn's workers)."""
        out: dict[str, int] = {}
        for name, proc in self.procs.items():
            if proc.process is None:
                continue
            total = 0
            for pid in _group_pids(proc.process.pid):
                with contextlib.suppress(OSError):
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1])
            out[name] = total
        return out


def _group_pids(pgid: int) -> list[int]:
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) == pgid:
                    pids.append(int(entry.name))
    return pids


# --- set-up through the public API and pages ------------------------------------------------------
class Client:
    """A user's HTTP session against gunicorn (pages with CSRF, the API with a key)."""

    def __init__(self, base: str) -> None:
        import requests

        self.base = base
        self.session = requests.Session()
        self.key = ""

    def page_post(self, path: str, data: dict[str, Any], form_path: str = "") -> Any:
        form = self.session.get(self.base + (form_path or path), timeout=30)
        token = self.session.cookies.get("csrftoken") or ""
        found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', form.text)
        if found:
            token = found.group(1)
        return self.session.post(
            self.base + path,
            data={**data, "csrfmiddlewaretoken": token},
            headers={"Referer": self.base + path},
            timeout=60,
        )

    def api(self, method: str, path: str, **kwargs: Any) -> Any:
        import requests

        headers = {"Authorization": f"Bearer {self.key}"}
        return requests.request(method, self.base + path, headers=headers, timeout=60, **kwargs)


def setup_team(client: Client, lab: Lab, scan_interval: int) -> dict[str, Any]:
    """The script path of the product: claim a key by email, confirm it from the email's link
    (choosing a password, which signs in), make a full key on the keys page, then use the API."""
    import requests

    answer = requests.get(f"{client.base}/api/v1.0/access/claim/{EMAIL}", timeout=30)
    if answer.status_code not in (200, 201):
        raise RuntimeError(f"claim: HTTP {answer.status_code} {answer.text[:300]}")
    link = None
    deadline = time.monotonic() + 60
    while link is None and time.monotonic() < deadline:
        link = lab.smtp.link(r"https?://[^\s\"<>]+/api/claim/[^\s\"<>]+/confirm/")
        time.sleep(0.5)
    if link is None:
        raise RuntimeError("no claim email reached the SMTP sink")
    path = "/" + link.split("/", 3)[3]
    done = client.page_post(path, {"password1": PASSWORD, "password2": PASSWORD})
    if done.status_code != 200:
        raise RuntimeError(f"claim confirm: HTTP {done.status_code}")
    signed_in = client.page_post("/accounts/login/", {"login": EMAIL, "password": PASSWORD})
    if "/accounts/login/" in signed_in.url:
        raise RuntimeError(f"sign-in failed: HTTP {signed_in.status_code}")
    page = client.page_post(
        "/settings/api-keys/new/", {"name": "drill", "scopes": ["read", "enrol", "manage"]}, "/settings/api-keys/"
    )
    found = re.search(r"<pre>([^<]+)</pre>", page.text)
    if not found:
        raise RuntimeError(f"the keys page showed no new key: HTTP {page.status_code} {page.url} {page.text[:500]}")
    client.key = found.group(1).strip()
    made = client.api("POST", "/api/v1/servers/bulk/", json={"text": "\n".join(lab.targets)})
    if made.status_code >= 300:
        raise RuntimeError(f"bulk enrol: HTTP {made.status_code} {made.text[:300]}")
    servers = _all(client, "/api/v1/servers/")
    for server in servers:
        if server.get("scan_interval") != scan_interval:
            client.api("PATCH", f"/api/v1/servers/{server['id']}/", json={"scan_interval": scan_interval})
    # The team's default channel ("Email every member") would mail the owner too: the drill counts
    # each alert on its own two channels, so it removes that one, as a user may.
    for channel in _all(client, "/api/v1/channels/"):
        gone = client.api("DELETE", f"/api/v1/channels/{channel['id']}/")
        if gone.status_code >= 300:
            raise RuntimeError(f"removing channel {channel.get('name')}: HTTP {gone.status_code}")
    domain = client.api("POST", "/api/v1/domains/", json={"domain": DOMAIN, "include_subdomains": True})
    hook = client.api(
        "POST",
        "/api/v1/channels/",
        json={
            "kind": "webhook",
            "name": "drill webhook",
            "url": f"http://127.0.0.1:{lab.webhook.port}/hook",
            "rate_limit_per_hour": 3600,
            "grouping_seconds": 0,
            "event_kinds": ["certificate_issued"],
        },
    )
    mail = client.api(
        "POST",
        "/api/v1/channels/",
        json={
            "kind": "email",
            "name": "drill email",
            "email_all_members": True,
            "rate_limit_per_hour": 3600,
            "grouping_seconds": 0,
            "event_kinds": ["certificate_issued"],
        },
    )
    for what, answer in (("domain", domain), ("webhook channel", hook), ("email channel", mail)):
        if answer.status_code >= 300:
            raise RuntimeError(f"{what}: HTTP {answer.status_code} {answer.text[:300]}")
    return {"servers": len(servers), "domain": DOMAIN, "channels": 2}


def _all(client: Client, path: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    url: str | None = path + "?page_size=500"
    while url:
        page = client.api("GET", url.replace(client.base, "")).json()
        items.extend(page.get("results", []))
        url = page.get("next")
    return items


# --- checks against the drill's database ----------------------------------------------------------
def db_rows(sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    from django.db import connection

    try:
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            return list(cursor.fetchall())
    except Exception:
        connection.close()  # the database restarted under us: reconnect on the next call
        raise


def scan_marks(ids: list[int]) -> dict[int, Any]:
    """Each server's last scan time now: a later scan (stored after this) moves it."""
    return dict(db_rows("SELECT id, last_scan_at FROM monitors_server WHERE id = ANY(%s)", (ids,)))


def scanned_since(marks: dict[int, Any]) -> int:
    """How many of the servers have stored a scan since `marks` were taken (a scan's time is its
    start, so a scan running at the mark and stored after it counts too)."""
    if not marks:
        return 0
    now = scan_marks(list(marks))
    return sum(1 for pk, before in marks.items() if now.get(pk) is not None and (before is None or now[pk] > before))


def claimed_now() -> list[int]:
    return [r[0] for r in db_rows("SELECT id FROM monitors_server WHERE claimed_until > now() AND removed_at IS NULL")]


def due_ids() -> list[int]:
    return [r[0] for r in db_rows("SELECT id FROM monitors_server WHERE removed_at IS NULL AND NOT paused")]


def pending_ids() -> list[int]:
    """Servers due or being scanned now: each must store a scan after a fault injected now."""
    return [
        r[0]
        for r in db_rows(
            "SELECT id FROM monitors_server WHERE removed_at IS NULL AND NOT paused "
            "AND (next_scan_at <= now() OR claimed_until > now())"
        )
    ]


def make_due(ids: list[int] | None = None) -> None:
    """Make servers due now (as their interval running out would), so the next beat pass claims them."""
    if ids is None:
        db_rows("UPDATE monitors_server SET next_scan_at = now() WHERE removed_at IS NULL RETURNING id")
    else:
        db_rows("UPDATE monitors_server SET next_scan_at = now() WHERE id = ANY(%s) RETURNING id", (ids,))


def now_db() -> dt.datetime:
    return db_rows("SELECT now()")[0][0]


# --- the drill --------------------------------------------------------------------------------------
@dataclass
class Row:
    fault: str
    injected: str
    must_hold: str
    recovery_s: float | None = None
    bound_s: float = 0.0
    lost: int = 0
    doubled: int = 0
    manual: str = "none"
    notes: str = ""
    ok: bool = False


class Drill:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.root = Path(tempfile.mkdtemp(prefix="kc-drill-"))
        self.rows: list[Row] = []
        self.pg = Postgres(self.root)
        self.redis = Redis(self.root)
        self.lab: Lab
        self.stack: Stack
        self.client: Client
        self.figures: dict[str, Any] = {}
        self.ct_issued: list[str] = []
        self.lease = 40 if not args.quick else 10  # the claim lease (s)
        self.beat = 60 if not args.quick else 10  # beat's pass over due servers (s)
        self.claim = 600 if not args.quick else 20  # a delivery's claim (KEYCHEST_NOTIFY_CLAIM_SECONDS)
        self.status_token = secrets.token_urlsafe(24)

    # set-up ------------------------------------------------------------------------------------
    def up(self) -> None:
        log(f"drill folder {self.root}")
        self.pg.init()
        self.redis.start()
        log(f"PostgreSQL on 127.0.0.1:{self.pg.port}, Redis on 127.0.0.1:{self.redis.port} (the drill's own)")
        self.lab = lab_start(self.root, self.args.servers, self.args.slow)
        web_port = free_port()
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("KEYCHEST_", "DATABASE_URL", "REDIS_URL", "CELERY_", "EMAIL_", "DJANGO_"))
        }
        if self.args.quick:  # the production back-off (5 s doubling to 15 min) outlasts a short drill
            env.update({"KEYCHEST_CT_BACKOFF_SECONDS": "2", "KEYCHEST_CT_BACKOFF_MAX_SECONDS": "20"})
        env.update(
            {
                "DJANGO_SETTINGS_MODULE": "keychest.settings",
                "DEBUG": "0",
                "SECRET_KEY": secrets.token_urlsafe(48),
                "ALLOWED_HOSTS": "127.0.0.1,localhost",
                "SITE_URL": f"http://127.0.0.1:{web_port}",
                "SECURE_SSL_REDIRECT": "0",
                "SESSION_COOKIE_SECURE": "0",
                "CSRF_COOKIE_SECURE": "0",
                "SECURE_HSTS_SECONDS": "0",
                "DATABASE_URL": self.pg.url,
                "REDIS_URL": self.redis.url,
                "EMAIL_URL": f"smtp://127.0.0.1:{self.lab.smtp.port}",
                "EMAIL_TIMEOUT": "5",
                "KEYCHEST_ALLOW_PRIVATE_TARGETS": "1",
                "KEYCHEST_DNS_NAMESERVERS": self.lab.dns.nameserver,
                "KEYCHEST_DNS_TIMEOUT": "2",
                "KEYCHEST_CT_LOG_LIST": str(self.lab.log_list),
                "KEYCHEST_CT_INGEST": "1",
                "KEYCHEST_SCAN_LEGACY_TLS": "0",  # one connection per scan: two scans at once show as two
                "KEYCHEST_SCAN_ALTERNATE_KEY": "0",
                "KEYCHEST_SCAN_DEADLINE": "6",
                "KEYCHEST_SCAN_CONNECT_TIMEOUT": "2",
                "KEYCHEST_SCAN_BATCH": str(self.args.batch),
                "KEYCHEST_SCAN_CLAIM_LEASE": str(self.lease),
                "KEYCHEST_SCAN_DUE_SECONDS": str(self.beat),
                "KEYCHEST_WEBHOOK_TIMEOUT": "5",
                "KEYCHEST_NOTIFY_CLAIM_SECONDS": str(self.claim),
                "KEYCHEST_STATUS_TOKEN": self.status_token,
                "KEYCHEST_CACHE_PREFIX": "drill",
                # 50 clients share one key and one address here: the load phase measures the stack,
                # not the per-key and per-address limits (600 and 1,200 a minute by default).
                "KEYCHEST_API_RATE_PER_KEY": "1000000",
                "KEYCHEST_API_RATE_PER_IP": "1000000",
                "WEB_CONCURRENCY": "2",
                "STATIC_ROOT": str(self.root / "static"),
            }
        )
        self.env = env
        os.environ.update({k: v for k, v in env.items() if k != "WEB_CONCURRENCY"})
        import django

        django.setup()
        for command in (["migrate"], ["collectstatic"]):
            subprocess.run([PYTHON, "manage.py", *command, "--noinput", "-v", "0"], cwd=BASE, env=env, check=True)  # noqa: S603
        self.stack = Stack(self.root, env, web_port)
        for name in self.stack.procs:
            self.stack.start(name)
        self.stack.supervise()
        base = f"http://127.0.0.1:{web_port}"
        import requests

        if wait_until(lambda: requests.get(base + "/healthz", timeout=2).status_code < 500, 90) is None:
            raise RuntimeError("gunicorn did not answer")
        self.client = Client(base)
        self.figures["setup"] = setup_team(self.client, self.lab, self.args.interval)
        self.ids = due_ids()
        log(f"set up through the API and pages: {self.figures['setup']}")
        took = wait_until(lambda: scanned_since(dict.fromkeys(self.ids)) == len(self.ids), 300, 1)
        self.figures["first_scans_s"] = took
        log(f"first scans of {len(self.ids)} servers done in {took} s")

    def down(self) -> None:
        with contextlib.suppress(Exception):
            self.stack.stop_all()
        with contextlib.suppress(Exception):
            self.lab.stop()
        self.redis.stop()
        self.pg.stop("immediate")
        if not self.args.keep:
            shutil.rmtree(self.root, ignore_errors=True)

    # helpers -----------------------------------------------------------------------------------
    def most_open(self) -> int:
        """The most scans of one lab server ever in flight at once (each holds one connection)."""
        stats = getattr(self.lab.tls, "most_open", {})
        return max(stats.values(), default=0)

    def ct_issue(self, count: int) -> list[str]:
        """New certificates for the watched domain in the lab CT log: each must reach both channels once."""
        log_ = self.lab.ctlog
        names = []
        for _ in range(count):
            name = f"ct{len(self.ct_issued)}.{DOMAIN}"
            self.ct_issued.append(name)
            names.append(name)
            log_.add_issuance(log_.issue([name]))
        log_.publish()
        return names

    def deliveries_health(self) -> str:
        """What /status.json's deliveries check says now (it warns after 10 minutes of waiting)."""
        import requests

        answer = requests.get(
            self.client.base + "/status.json", headers={"Authorization": f"Bearer {self.status_token}"}, timeout=30
        )
        for check in answer.json().get("checks", []):
            if check.get("name") == "deliveries":
                return f"{check.get('status')}: {check.get('summary')}"
        return f"HTTP {answer.status_code}, no deliveries check"

    def deliveries_check(self, names: list[str], timeout: float) -> tuple[float | None, int, int, str]:
        """(seconds until every alert reached both channels, lost, doubled, notes).

        Doubled counts distinct deliveries of one alert: webhook events by their idempotency_key,
        emails by their Message-ID (a resend after a crash carries the same one). Repeats of the
        same key or Message-ID are reported apart: receivers drop them by it."""

        def arrived() -> bool:
            hooks = self.lab.webhook.subjects()
            mails = "\n".join(text for _, text in self.lab.smtp.copies(ALERTS_TO))
            return all(any(n in s for s in hooks) for n in names) and all(n in mails for n in names)

        took = wait_until(arrived, timeout, 1)
        hooks = self.lab.webhook.received_events()
        mails = self.lab.smtp.copies(ALERTS_TO)
        lost = doubled = repeats = 0
        for name in names:
            keys = [key for key, subject in hooks if name in subject]
            ids = [mid for mid, text in mails if name in text]
            lost += (not keys) + (not ids)
            doubled += max(len(set(keys)) - 1, 0) + max(len(set(ids)) - 1, 0)
            repeats += len(keys) - len(set(keys)) + len(ids) - len(set(ids))
        return took, lost, doubled, f"repeats of one key or Message-ID: {repeats}"

    def scans_recover(self, row: Row, marks: dict[int, Any], bound: float) -> None:
        took = wait_until(lambda: scanned_since(marks) == len(marks), bound + 120, 1)
        row.recovery_s = round(took, 1) if took is not None else None
        row.lost = len(marks) - scanned_since(marks)
        row.bound_s = bound

    # faults ------------------------------------------------------------------------------------
    def fault_worker_scan(self) -> Row:
        row = Row("SIGKILL of a worker", "mid scan batch", "every server of the batch scanned again within the bound")
        make_due()
        silent = {self.lab.ports[h] for h in self.lab.slow}
        holder: list[str] = []

        def in_flight() -> bool:
            holder[:] = [n for n in ("worker1", "worker2") if silent & self.stack.remote_ports(n)]
            return bool(holder)

        if wait_until(in_flight, 150, 0.2) is None:
            row.notes = "no batch in flight to kill"
            return row
        before = scan_marks(due_ids())
        self.stack.kill(holder[0])
        time.sleep(2)
        # The killed batch (and other batches still running, which finish on their own).
        ids = claimed_now()
        marks = {pk: before[pk] for pk in ids}
        time.sleep(3)
        self.stack.start(holder[0])
        # lease + one beat pass + the scan itself (the slow servers take the deadline) + queue wait.
        self.scans_recover(row, marks, self.lease + self.beat + 6 + 30)
        row.doubled = max(self.most_open() - 1, 0)
        row.notes = f"{holder[0]} killed with {len(ids)} servers claimed"
        row.ok = row.lost == 0 and row.doubled == 0 and row.recovery_s is not None and row.recovery_s <= row.bound_s
        return row

    def fault_worker_delivery(self) -> Row:
        row = Row("SIGKILL of both workers", "mid webhook delivery and mid alert email", "every alert delivered once")
        self.lab.webhook.delay = 3.0  # the receiver and the SMTP server take 3 s to answer:
        self.lab.smtp.delay = 3.0  # the kill lands while a request and a message are in flight
        hooks, mails = self.lab.webhook.started, self.lab.smtp.started
        names = self.ct_issue(self.args.alerts)
        inflight = wait_until(lambda: self.lab.webhook.started > hooks or self.lab.smtp.started > mails, 180, 0.1)
        killed = time.monotonic()
        self.stack.kill("worker1")
        self.stack.kill("worker2")
        self.lab.webhook.delay = 0.0
        self.lab.smtp.delay = 0.0
        time.sleep(5)
        self.stack.start("worker1")
        self.stack.start("worker2")
        took, row.lost, row.doubled, repeats = self.deliveries_check(names, self.claim + 600)
        row.recovery_s = round(time.monotonic() - killed, 1) if took is not None else None
        row.bound_s = self.claim + 300
        row.notes = (
            f"killed {'with a delivery in flight' if inflight is not None else 'with nothing in flight'}; "
            f"a delivery's claim runs {self.claim} s; {repeats}"
        )
        row.ok = row.lost == 0 and row.doubled == 0 and inflight is not None
        row.ok = row.ok and row.recovery_s is not None and row.recovery_s <= row.bound_s
        return row

    def fault_ct_kill(self) -> Row:
        row = Row("SIGKILL of the CT ingester", "mid chunk", "no gap, no duplicate; events exactly once")
        names = self.ct_issue(self.args.alerts)
        self.lab.ctlog.add_random(self.args.ct_entries)
        self.lab.ctlog.publish()
        size = self.lab.ctlog.published_size
        time.sleep(1.0)
        self.stack.kill("ct")
        time.sleep(3)
        killed = time.monotonic()
        self.stack.start("ct")
        took = wait_until(lambda: db_rows("SELECT max(position) FROM certificates_ctlog")[0][0] == size, 600, 1)
        row.recovery_s = round(took, 1) if took is not None else None
        row.bound_s = 600
        position, verified = db_rows("SELECT max(position), max(verified_size) FROM certificates_ctlog")[0]
        events = Counter(
            r[0] for r in db_rows("SELECT subject FROM notifications_event WHERE kind = 'certificate_issued'")
        )
        row.lost = sum(1 for n in names if not any(n in s for s in events)) + max(size - int(position or 0), 0)
        row.doubled = sum(max(sum(c for s, c in events.items() if n in s) - 1, 0) for n in names)
        _, d_lost, d_doubled, repeats = self.deliveries_check(names, 300)
        row.lost += d_lost
        row.doubled += d_doubled
        row.notes = f"log size {size}, read to {position}, verified to {verified}; restarted {time.monotonic() - killed:.0f} s ago; {repeats}"
        row.ok = row.lost == 0 and row.doubled == 0 and took is not None and verified == size
        return row

    def fault_redis(self) -> Row:
        row = Row(
            "Redis restart (data lost)",
            "with tasks queued and running",
            "no scheduled work lost: beat or the claims bring it back",
        )
        make_due()
        wait_until(lambda: len(claimed_now()) > 0, 60, 0.2)
        marks = scan_marks(pending_ids())
        names = self.ct_issue(max(2, self.args.alerts // 2))
        self.redis.stop()
        time.sleep(3)
        self.redis.start()
        self.scans_recover(row, marks, self.lease + self.beat + 60 + 30)
        _, d_lost, d_doubled, repeats = self.deliveries_check(names, 300)
        row.lost += d_lost
        row.doubled = d_doubled + max(self.most_open() - 1, 0)
        wait_until(lambda: all(self.stack.alive().values()), 30)  # the supervisor's restarts
        alive = self.stack.alive()
        row.notes = f"{len(marks)} servers due; processes alive after: {sum(alive.values())}/{len(alive)}; {repeats}"
        row.ok = row.lost == 0 and row.doubled == 0 and row.recovery_s is not None and all(alive.values())
        return row

    def fault_postgres(self) -> Row:
        row = Row(
            "PostgreSQL fast shutdown and restart",
            "during ingestion and scans",
            "every process reconnects; no half-written scan",
        )
        make_due()
        wait_until(lambda: len(claimed_now()) > 0, 60, 0.2)
        names = self.ct_issue(max(2, self.args.alerts // 2))
        self.lab.ctlog.add_random(self.args.ct_entries)
        self.lab.ctlog.publish()
        marks = scan_marks(pending_ids())
        self.pg.stop("fast")
        time.sleep(5)
        self.pg.start()
        self.scans_recover(row, marks, self.lease + self.beat + 60 + 60)
        size = self.lab.ctlog.published_size
        ct_ok = wait_until(lambda: db_rows("SELECT max(position) FROM certificates_ctlog")[0][0] == size, 300, 1)
        _, d_lost, d_doubled, repeats = self.deliveries_check(names, 300)
        half = db_rows(
            "SELECT count(*) FROM monitors_server s WHERE removed_at IS NULL AND last_scan_at IS NOT NULL AND NOT EXISTS "
            "(SELECT 1 FROM monitors_scanresult r WHERE r.server_id = s.id AND r.current)"
        )[0][0]
        wait_until(lambda: all(self.stack.alive().values()), 30)  # the supervisor's restarts
        alive = self.stack.alive()
        row.lost += d_lost + int(half) + (0 if ct_ok is not None else 1)
        row.doubled = d_doubled + max(self.most_open() - 1, 0)
        row.notes = f"servers scanned without a current result (half-written): {half}; processes alive: {sum(alive.values())}/{len(alive)}; {repeats}"
        row.ok = row.lost == 0 and row.doubled == 0 and row.recovery_s is not None and all(alive.values())
        return row

    def fault_smtp(self) -> Row:
        minutes = self.args.smtp_minutes
        row = Row(
            "SMTP server down", f"{minutes:g} min, during alerts", "everything delivered once it is back, nothing twice"
        )
        self.lab.smtp.down()
        names = self.ct_issue(self.args.alerts)
        time.sleep(minutes * 60)
        health = self.deliveries_health()
        self.lab.smtp.up()
        back = time.monotonic()
        took, row.lost, row.doubled, repeats = self.deliveries_check(names, 1800)
        row.recovery_s = round(time.monotonic() - back, 1) if took is not None else None
        row.bound_s = 1800
        row.notes = (
            f"status page's deliveries check at the outage's end: {health}; retries back off 1, 2, 4 … min; {repeats}"
        )
        row.ok = row.lost == 0 and row.doubled == 0 and took is not None
        return row

    def fault_ctlog(self) -> Row:
        row = Row("CT log answering 500, 429", "then short batches", "back-off, then catch-up without gap")
        faults = self.lab.ctlog.faults
        names = self.ct_issue(max(2, self.args.alerts // 2))
        self.lab.ctlog.add_random(self.args.ct_entries)
        self.lab.ctlog.publish()
        size = self.lab.ctlog.published_size
        third = self.args.ctlog_seconds / 3
        faults.status_500 = 10**9  # every request answers 500 ...
        time.sleep(third)
        faults.status_500, faults.status_429 = 0, 10**9  # ... then 429 ...
        time.sleep(third)
        faults.status_429, faults.short_batches = 0, True  # ... then short (truncated) batches
        time.sleep(third)
        faults.short_batches = False
        back = time.monotonic()
        took = wait_until(lambda: db_rows("SELECT max(position) FROM certificates_ctlog")[0][0] == size, 600, 1)
        row.recovery_s = round(time.monotonic() - back, 1) if took is not None else None
        row.bound_s = 600
        _, d_lost, d_doubled, repeats = self.deliveries_check(names, 300)
        verified = db_rows("SELECT max(verified_size) FROM certificates_ctlog")[0][0]
        row.lost = d_lost + (0 if took is not None else 1)
        row.doubled = d_doubled
        row.notes = (
            f"500s, 429s, then short batches, {third:g} s each; log size {size}, verified to {verified}; {repeats}"
        )
        row.ok = row.lost == 0 and row.doubled == 0 and took is not None and verified == size
        return row

    def fault_webhook_hang(self) -> Row:
        row = Row("webhook receiver hanging", "during delivery", "times out, retries, recorded; email unaffected")
        self.lab.webhook.hang.set()
        names = self.ct_issue(2)
        mails = wait_until(lambda: all(n in "\n".join(self.lab.smtp.to(ALERTS_TO)) for n in names), 300, 1)
        time.sleep(15)  # past the 5 s webhook timeout: attempts recorded as failures
        attempts = db_rows(
            "SELECT count(*) FROM notifications_deliveryattempt a JOIN notifications_delivery d ON d.id = a.delivery_id "
            "JOIN notifications_channel c ON c.id = d.channel_id WHERE c.kind = 'webhook' AND NOT a.ok"
        )[0][0]
        self.lab.webhook.hang.clear()
        back = time.monotonic()
        took, row.lost, row.doubled, repeats = self.deliveries_check(names, 900)
        row.recovery_s = round(time.monotonic() - back, 1) if took is not None else None
        row.bound_s = 900
        row.notes = f"email arrived during the hang: {'yes' if mails is not None else 'no'}; failed webhook attempts recorded: {attempts}; {repeats}"
        row.ok = row.lost == 0 and row.doubled == 0 and took is not None and mails is not None and int(attempts) > 0
        return row

    def fault_dns(self) -> Row:
        row = Row("DNS resolver silent", "during a scan", "findings say so; no worker hangs past its deadline")
        for host in self.lab.addresses:
            self.lab.dns.set(host, "TIMEOUT")  # the resolver never answers
        make_due()
        marks = scan_marks(pending_ids())
        # DNS is re-read every 2 h: force it for the due servers, as a resolver outage would be met.
        db_rows("UPDATE monitors_server SET dns_resolved_at = NULL WHERE id = ANY(%s) RETURNING id", (list(marks),))
        self.scans_recover(row, marks, self.lease + self.beat + 60)
        findings = db_rows(
            "SELECT count(DISTINCT server_id) FROM monitors_finding WHERE resolved_at IS NULL AND code = 'dns_failure'"
        )[0][0]
        for host, address in self.lab.addresses.items():
            self.lab.dns.set(host, [address])
        row.notes = f"servers with an open DNS finding: {findings} of {len(marks)}"
        row.ok = row.lost == 0 and row.recovery_s is not None and int(findings) == len(marks)
        return row

    FAULTS = {  # quick ones first: a drill cut short still has most rows
        "worker_scan": fault_worker_scan,
        "ct_kill": fault_ct_kill,
        "redis": fault_redis,
        "postgres": fault_postgres,
        "dns": fault_dns,
        "webhook_hang": fault_webhook_hang,
        "worker_delivery": fault_worker_delivery,
        "ctlog": fault_ctlog,
        "smtp": fault_smtp,
    }

    # load and soak -------------------------------------------------------------------------------
    def load(self, clients: int, seconds: float) -> dict[str, Any]:
        import requests

        latencies: list[float] = []
        errors = Counter[str]()
        lock = threading.Lock()
        stop = time.monotonic() + seconds
        paths = [
            "/api/v1/servers/?page_size=50",
            f"/api/v1.0/servers/expiration/s{self.args.slow}.{DOMAIN}",
            "/api/v1/findings/",
        ]

        def one(index: int) -> None:
            session = requests.Session()
            session.headers["Authorization"] = f"Bearer {self.client.key}"
            n = index
            while time.monotonic() < stop:
                path = paths[n % len(paths)]
                n += 1
                started = time.perf_counter()
                try:
                    answer = session.get(self.client.base + path, timeout=30)
                    ok = answer.status_code < 400
                    kind = "" if ok else f"HTTP {answer.status_code}"
                except requests.RequestException as error:
                    kind = type(error).__name__
                with lock:
                    latencies.append(time.perf_counter() - started)
                    if kind:
                        errors[kind] += 1

        threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        latencies.sort()
        count = len(latencies)
        return {
            "clients": clients,
            "seconds": seconds,
            "requests": count,
            "rps": round(count / seconds, 1),
            "p50_ms": round(latencies[count // 2] * 1000, 1) if count else None,
            "p99_ms": round(latencies[min(count - 1, int(count * 0.99))] * 1000, 1) if count else None,
            "error_rate": round(sum(errors.values()) / count, 4) if count else None,
            "errors": dict(errors),
        }

    def soak(self, minutes: float) -> dict[str, Any]:
        """Continuous scanning (every server due again each minute); RSS of every process each minute."""
        samples: dict[str, list[tuple[float, int]]] = defaultdict(list)
        started = time.monotonic()
        end = started + minutes * 60
        while True:
            make_due()
            for name, kib in self.stack.rss_kib().items():
                samples[name].append(((time.monotonic() - started) / 60, kib))
            if time.monotonic() >= end:
                break
            time.sleep(min(60, max(0, end - time.monotonic())))
        slopes: dict[str, Any] = {}
        for name, points in samples.items():
            if len(points) >= 3:
                xs, ys = [p[0] for p in points], [p[1] / 1024 for p in points]
                slope = statistics.linear_regression(xs, ys).slope
                slopes[name] = {
                    "first_mib": round(ys[0], 1),
                    "last_mib": round(ys[-1], 1),
                    "slope_mib_per_min": round(slope, 3),
                    # Half the run's samples after warm-up: a leak shows there as a steady climb.
                    "slope_after_warmup": round(
                        statistics.linear_regression(xs[len(xs) // 2 :], ys[len(ys) // 2 :]).slope, 3
                    )
                    if len(xs) >= 6
                    else None,
                }
        return {"minutes": minutes, "samples": len(next(iter(samples.values()), [])), "processes": slopes}

    # run -------------------------------------------------------------------------------------------
    def run(self) -> int:
        # Count the scans of each lab server in flight at once (one connection each).
        _count_connections(self.lab_tls_class())
        try:
            self.up()
            if self.args.load_seconds:
                log(f"load: {self.args.clients} clients for {self.args.load_seconds} s")
                self.figures["load"] = self.load(self.args.clients, self.args.load_seconds)
                log(f"  {self.figures['load']}")
                self.write()
            chosen = [f for f in self.FAULTS if not self.args.only or f in self.args.only]
            for name in chosen:
                log(f"fault: {name}")
                restarts = Counter(self.stack.restarts)
                self.lab.tls.most_open = Counter(self.lab.tls.open)  # each row counts its own overlaps
                try:
                    row = self.FAULTS[name](self)
                except Exception as error:  # noqa: BLE001 - a row that could not run is a failed row
                    row = Row(name, "", "", notes=f"the drill failed: {type(error).__name__}: {error}")
                restarted = self.stack.restarts - restarts
                if restarted:
                    row.notes += f"; exited and restarted by the supervisor: {dict(restarted)}"
                self.rows.append(row)
                log(f"  {row}")
                self.write()  # after every row: a drill cut short still leaves its figures
                time.sleep(5)
            if self.args.soak_minutes:
                log(f"soak: {self.args.soak_minutes} min")
                self.figures["soak"] = self.soak(self.args.soak_minutes)
                log(f"  {self.figures['soak']}")
            self.figures["most_open"] = self.most_open()
            self.figures["overlaps"] = [list(map(str, o)) for o in getattr(self.lab.tls, "overlaps", [])]
            self.figures["settings"] = {
                "claim_lease_s": self.lease,
                "beat_s": self.beat,
                "delivery_claim_s": self.claim,
            }
            self.figures["restarts_by_supervisor"] = dict(self.stack.restarts)
        finally:
            self.down()
        print(self.write())
        log(f"wrote {self.args.output}")
        return 0 if self.rows and all(r.ok for r in self.rows) else 1

    def write(self) -> str:
        lab = getattr(self, "lab", None)
        self.figures["overlaps"] = [list(map(str, o)) for o in getattr(getattr(lab, "tls", None), "overlaps", [])]
        self.figures["settings"] = {"claim_lease_s": self.lease, "beat_s": self.beat, "delivery_claim_s": self.claim}
        table = render(self.rows, self.figures, self.args)
        if not self.args.no_write:
            Path(self.args.output).write_text(table)
        return table

    @staticmethod
    def lab_tls_class() -> Any:
        from lab.tls import Lab as TLSLab

        return TLSLab


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


def _commit() -> str:
    try:
        git = ["git", "rev-parse", "--short", "HEAD"]
        return subprocess.run(git, cwd=BASE, capture_output=True, text=True).stdout.strip()  # noqa: S603
    except OSError:
        return "unknown"


def render(rows: list[Row], figures: dict[str, Any], args: argparse.Namespace) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        "# Reliability: the fault drill",
        "",
        f"Written by `scripts/fault_drill.py` ({'--quick' if args.quick else 'make faults'}) on {when}, commit "
        f"`{_commit()}`, on a 2-core machine shared with other work. Do not edit by hand: run the drill.",
        "",
        "The drill runs the real stack on this machine only: gunicorn, two Celery workers and beat, the CT",
        "follower, its own PostgreSQL cluster (initdb, private port) and Redis server (private port), and",
        f"the lab: {args.servers} TLS servers on 127.0.0.x ({args.slow} of them silent, so every scan of them",
        "holds its connection to the deadline and a batch is in flight long enough to kill), lab DNS, the",
        "lab CT log, an aiosmtpd SMTP sink and a webhook receiver. The team, its servers, the watched",
        "domain and the two channels (email, webhook) were set up through the public API and pages.",
        "Alerts are new certificates for the watched domain logged in the lab CT log; each must reach",
        'both channels exactly once. A scan "doubled" is one lab server ever holding two scan',
        "connections at once (legacy and second-key probes are off in the drill, so one scan is one",
        "connection). Recovery is measured from the fault's end (or the kill) to the last item done.",
        "",
        "| fault | injected when | what must hold | recovery (s) | bound (s) | lost | doubled | manual steps | holds | notes |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        rec = "—" if r.recovery_s is None else f"{r.recovery_s:g}"
        lines.append(
            f"| {r.fault} | {r.injected} | {r.must_hold} | {rec} | {r.bound_s:g} | {r.lost} | {r.doubled} | "
            f"{r.manual} | {'yes' if r.ok else '**no**'} | {r.notes} |"
        )
    lines += ["", "## Figures", "", "```json", json.dumps(figures, indent=2, default=str), "```", ""]
    lines += [
        "## Bounds and guarantees",
        "",
        f"- Scans: a batch's claim is a {figures.get('settings', {}).get('claim_lease_s', 40)} s lease renewed every",
        "  quarter lease while it scans (monitors/scan_claims.py); a killed worker's servers are claimable",
        f"  one lease later and beat (every {figures.get('settings', {}).get('beat_s', 60)} s) queues them: lease + one",
        "  beat pass + the scan itself (+ 30 s of queueing on this machine) is the bound. Redis'",
        "  visibility timeout (1,620 s) is longer than any task run, so a running task is never handed out twice.",
        "- Processes that exit are restarted by a supervisor, as compose's `restart: unless-stopped` does:",
        "  a Celery worker can exit when Redis restarts while it holds messages (kombu 5.7's reconnect",
        "  path); rows that say so count it, and it loses nothing: the work lives in database rows.",
        "- Deliveries are at least once on the wire, exactly once by key: a webhook event carries its",
        "  `idempotency_key` (the event's UUID, stable across retries and channels) and an alert email keeps",
        "  one `Message-ID` per delivery and recipient, so a resend after a crash (the receiver answered,",
        '  the worker died before recording it) is recognisably the same message. "Doubled" counts',
        "  distinct keys or Message-IDs for one alert; repeats of the same one are in the notes.",
        "",
        f"Run with: `python scripts/fault_drill.py {' '.join(sys.argv[1:])}`".rstrip(),
        "",
    ]
    return "\n".join(lines)


def _interrupted(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt  # SIGTERM: stop like Ctrl-C, so the drill's own services are stopped


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupted)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="the CI drill: small lab, short outages, short soak")
    parser.add_argument("--only", type=lambda s: set(s.split(",")), default=set(), help="comma-separated fault names")
    parser.add_argument("--servers", type=int, default=None)
    parser.add_argument("--slow", type=int, default=None, help="silent lab servers (scans that take the deadline)")
    parser.add_argument("--batch", type=int, default=None)
    parser.add_argument("--interval", type=int, default=300)
    parser.add_argument("--alerts", type=int, default=None)
    parser.add_argument("--ct-entries", type=int, default=None)
    parser.add_argument("--smtp-minutes", type=float, default=None)
    parser.add_argument("--ctlog-seconds", type=float, default=None)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--load-seconds", type=float, default=None)
    parser.add_argument("--soak-minutes", type=float, default=None)
    parser.add_argument("--output", default=str(BASE / "docs" / "reliability.md"), help="where the report goes")
    parser.add_argument("--no-write", action="store_true", help="print the table, write no report")
    parser.add_argument("--keep", action="store_true", help="keep the drill folder (logs, database)")
    args = parser.parse_args()
    quick = args.quick
    defaults = {
        "servers": 30 if quick else 200,
        "slow": 4 if quick else 10,
        "batch": 10 if quick else 50,
        "alerts": 3 if quick else 10,
        "ct_entries": 300 if quick else 3000,
        "smtp_minutes": 0.5 if quick else 10,
        "ctlog_seconds": 20 if quick else 300,
        "load_seconds": 15 if quick else 60,
        "soak_minutes": 3 if quick else 30,
    }
    for key, value in defaults.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if quick:
        args.clients = min(args.clients, 20)
    os.chdir(BASE)
    return Drill(args).run()


if __name__ == "__main__":
    sys.exit(main())
