"""A local ACME server's Renewal Information endpoint (RFC 9773), with fault switches.

Serves `GET /directory` (naming `renewalInfo`) and `GET /renewal-info/<certID>`: the window set
with `set_window(cert_id, start, end)`, 404 for certificates it does not know. Faults per
certificate ID or for all (`fault="*"`): "500", "429" (with Retry-After), "malformed" (not
JSON), "oversized" (a body over 64 KiB), "slow" (answers after `slow_seconds`).
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


class LabAcme:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.lock = threading.Lock()
        self.windows: dict[str, tuple[datetime, datetime, str]] = {}
        self.retry_after: int | None = None
        self.faults: dict[str, str] = {}
        self.directory_fault = ""
        self.slow_seconds = 3.0
        self.requests: Counter[str] = Counter()
        lab = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                return

            def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                for key, value in (headers or {}).items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self) -> None:
                with lab.lock:
                    lab.requests[self.path] += 1
                if self.path == "/directory":
                    if lab.directory_fault == "no-renewal-info":
                        self._send(200, b'{"newNonce": "x"}')
                        return
                    self._send(200, json.dumps({"renewalInfo": f"{lab.url}/renewal-info"}).encode())
                    return
                if not self.path.startswith("/renewal-info/"):
                    self._send(404, b"{}")
                    return
                cert_id = self.path.removeprefix("/renewal-info/")
                with lab.lock:
                    fault = lab.faults.get(cert_id) or lab.faults.get("*", "")
                    window = lab.windows.get(cert_id)
                    retry = lab.retry_after
                if fault == "500":
                    self._send(500, b'{"type": "urn:ietf:params:acme:error:serverInternal"}')
                elif fault == "429":
                    self._send(429, b'{"type": "urn:ietf:params:acme:error:rateLimited"}', {"Retry-After": "120"})
                elif fault == "malformed":
                    self._send(200, b"{not json")
                elif fault == "oversized":
                    self._send(200, b'{"pad": "' + b"x" * 70000 + b'"}')
                elif fault == "slow":
                    time.sleep(lab.slow_seconds)
                    self._send(200, b"{}")
                elif window is None:
                    self._send(404, b'{"type": "urn:ietf:params:acme:error:malformed"}')
                else:
                    start, end, explanation = window
                    body: dict[str, Any] = {"suggestedWindow": {"start": start.isoformat(), "end": end.isoformat()}}
                    if explanation:
                        body["explanationURL"] = explanation
                    self._send(200, json.dumps(body).encode(), {"Retry-After": str(retry)} if retry else None)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://{host}:{self.server.server_address[1]}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def directory_url(self) -> str:
        return f"{self.url}/directory"

    def set_window(self, cert_id: str, start: datetime, end: datetime, explanation: str = "") -> None:
        with self.lock:
            self.windows[cert_id] = (start, end, explanation)

    def start(self) -> LabAcme:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def __enter__(self) -> LabAcme:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
