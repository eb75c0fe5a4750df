"""A real local RDAP server over HTTP: `GET /domain/<name>` answers an RFC 9083 domain object.

Every domain under the lab's TLDs is "registered": its registration and expiry dates are made
up from a hash of the name (stable across runs), or set by a test with `register()`. Switches
for the faults real RDAP servers show: 404 for chosen names, the next N requests answering 429
(with Retry-After) or 500, malformed JSON, a valid-JSON non-domain, an oversized body, a slow
(trickling) answer. `/dns.json` serves a bootstrap pointing at it. Binds 127.0.0.1 on an ephemeral port.
"""

from __future__ import annotations

import hashlib
import json
import ssl
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

LAB_TLDS = ("test", "example")


@dataclass
class Faults:
    """Switches; counters count down one per affected request."""

    not_found: set[str] = field(default_factory=set)  # these domains answer 404
    status_429: int = 0  # the next N requests answer 429 Too Many Requests
    retry_after: int | None = None  # the Retry-After (seconds) sent with 429/500
    status_500: int = 0  # the next N requests answer 500
    malformed: int = 0  # the next N answers are cut-off JSON
    not_a_domain: int = 0  # the next N answers are valid JSON but an error object, not a domain
    bad_date: int = 0  # the next N answers have an unreadable eventDate
    oversized: int = 0  # the next N answers are padded past any sane size
    oversized_bytes: int = 2 * 1024 * 1024
    slow_seconds: float = 0.0  # every answer trickles out over this long
    redirect_to: str = ""  # every domain look-up answers 302 to this URL ("{domain}" is filled in)


@dataclass
class Registration:
    expires_at: datetime
    registered_at: datetime
    changed_at: datetime
    registrar: str = "KeyChest Lab Registrar, Inc."
    statuses: list[str] = field(default_factory=lambda: ["client transfer prohibited", "active"])


def _made_up(domain: str) -> Registration:
    digest = int.from_bytes(hashlib.sha256(domain.encode()).digest()[:8], "big")
    now = datetime.now(UTC).replace(microsecond=0)
    expires = now + timedelta(days=10 + digest % 700, hours=digest % 24)
    registered = expires - timedelta(days=365 * (1 + digest % 9))
    return Registration(expires_at=expires, registered_at=registered, changed_at=expires - timedelta(days=365))


def _iso(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up early (a timeout, an error page it does not read) is expected.
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class LocalRDAP:
    """One RDAP server on 127.0.0.1 for the lab's TLDs."""

    def __init__(
        self, *, host: str = "127.0.0.1", tlds: tuple[str, ...] = LAB_TLDS, tls: ssl.SSLContext | None = None
    ) -> None:
        self.tlds = tlds
        self.tls = tls
        self.faults = Faults()
        self.registrations: dict[str, Registration] = {}
        self.requests: list[str] = []
        self.lock = threading.RLock()
        self._server = _Server((host, 0), _handler_for(self))
        if tls is not None:
            # HTTPS as a public RDAP server speaks it; the URL names "localhost" for SNI.
            self._server.socket = tls.wrap_socket(self._server.socket, server_side=True)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        if self.tls is not None:
            return f"https://localhost:{port}/"
        return f"http://{host!s}:{port}/"

    def start(self) -> LocalRDAP:
        self._thread = threading.Thread(target=self._server.serve_forever, name="lab-rdap", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> LocalRDAP:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def register(self, domain: str, *, expires_at: datetime, registrar: str = "KeyChest Lab Registrar, Inc.") -> None:
        """Set a domain's registration (a renewal is a second call with a later expiry)."""
        with self.lock:
            self.registrations[domain] = Registration(
                expires_at=expires_at,
                registered_at=expires_at - timedelta(days=3 * 365),
                changed_at=expires_at - timedelta(days=365),
                registrar=registrar,
            )

    def bootstrap(self) -> dict[str, Any]:
        """An IANA dns.json (RFC 9224) sending the lab's TLDs here."""
        return {
            "description": "KeyChest lab RDAP bootstrap",
            "publication": _iso(datetime.now(UTC)),
            "services": [[list(self.tlds), [self.url]]],
            "version": "1.0",
        }

    def write_bootstrap(self, path: str | Path) -> Path:
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.bootstrap(), indent=2))
        return target

    def domain_object(self, domain: str) -> dict[str, Any]:
        with self.lock:
            reg = self.registrations.get(domain) or _made_up(domain)
        return {
            "rdapConformance": [
                "rdap_level_0",
                "icann_rdap_response_profile_1",
                "icann_rdap_technical_implementation_guide_1",
            ],
            "objectClassName": "domain",
            "handle": "LAB-" + hashlib.sha1(domain.encode()).hexdigest()[:12].upper(),
            "ldhName": domain.upper(),
            "status": reg.statuses,
            "events": [
                {"eventAction": "registration", "eventDate": _iso(reg.registered_at)},
                {"eventAction": "expiration", "eventDate": _iso(reg.expires_at)},
                {"eventAction": "last changed", "eventDate": _iso(reg.changed_at)},
                {"eventAction": "last update of RDAP database", "eventDate": _iso(datetime.now(UTC))},
            ],
            "entities": [
                {
                    "objectClassName": "entity",
                    "handle": "9999",
                    "roles": ["registrar"],
                    "publicIds": [{"type": "IANA Registrar ID", "identifier": "9999"}],
                    "vcardArray": ["vcard", [["version", {}, "text", "4.0"], ["fn", {}, "text", reg.registrar]]],
                }
            ],
            "nameservers": [{"objectClassName": "nameserver", "ldhName": f"NS1.{domain.upper()}"}],
        }


def _take(faults: Faults, name: str) -> bool:
    value = getattr(faults, name)
    if value > 0:
        setattr(faults, name, value - 1)
        return True
    return False


def _handler_for(rdap: LocalRDAP) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            return

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/rdap+json")
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            slow = rdap.faults.slow_seconds
            if slow > 0 and body:
                step = max(1, len(body) // 20)
                for start in range(0, len(body), step):
                    self.wfile.write(body[start : start + step])
                    self.wfile.flush()
                    time.sleep(slow / 20)
            else:
                self.wfile.write(body)

        def _error(self, status: int, title: str, headers: dict[str, str] | None = None) -> None:
            body = json.dumps({"errorCode": status, "title": title}).encode()
            self._send(status, body, headers)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            with rdap.lock:
                rdap.requests.append(path)
                faults = rdap.faults
                retry = {"Retry-After": str(faults.retry_after)} if faults.retry_after is not None else {}
                if _take(faults, "status_429"):
                    return self._error(429, "Too Many Requests", retry)
                if _take(faults, "status_500"):
                    return self._error(500, "Internal Server Error", retry)
                if path == "/dns.json":
                    return self._send(200, json.dumps(rdap.bootstrap()).encode())
                if faults.redirect_to and path.startswith("/domain/"):
                    target = faults.redirect_to.replace("{domain}", path[len("/domain/") :])
                    faults.redirect_to = ""
                    return self._send(302, b"", {"Location": target})
                if not path.startswith("/domain/"):
                    return self._error(400, "Only domain look-ups are served here")
                domain = unquote(path[len("/domain/") :]).lower().rstrip(".")
                if domain.rsplit(".", 1)[-1] not in rdap.tlds or domain in faults.not_found:
                    return self._error(404, "Not Found")
                if _take(faults, "malformed"):
                    return self._send(200, b'{"objectClassName": "domain", "events": [{"eventAct')
                if _take(faults, "not_a_domain"):
                    return self._send(200, json.dumps({"objectClassName": "entity", "handle": "X"}).encode())
                obj = rdap.domain_object(domain)
                if _take(faults, "bad_date"):
                    obj["events"][1]["eventDate"] = "tomorrow-ish"
                if _take(faults, "oversized"):
                    obj["remarks"] = [{"description": ["x" * 1000] * (faults.oversized_bytes // 1000)}]
            self._send(200, json.dumps(obj).encode())

    return Handler
