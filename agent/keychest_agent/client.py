"""The agent's HTTP client: JSON over HTTPS, with retries and exponential back-off (stdlib only)."""

from __future__ import annotations

import datetime as dt
import json
import logging
import random
import ssl
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from keychest_agent import __version__

logger = logging.getLogger("keychest_agent")

TRANSIENT_STATUSES = {408, 425, 429, 500, 502, 503, 504}


class Unauthorized(Exception):
    """The server does not know this agent key (revoked, or never enrolled)."""


class Refused(Exception):
    """The server refused the request as malformed (4xx); retrying would not help."""


class Unavailable(Exception):
    """The server could not be reached or answered with a transient error."""


@dataclass
class Client:
    server: str
    key: str = ""
    timeout: float = 30.0
    attempts: int = 5
    backoff: float = 1.0
    backoff_max: float = 60.0
    ca_file: str = ""

    def _context(self) -> ssl.SSLContext | None:
        if not self.server.startswith("https:"):
            return None
        return ssl.create_default_context(cafile=self.ca_file or None)

    def request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        """One call, retried with jittered exponential back-off while the failure is transient."""
        delay = self.backoff
        for attempt in range(1, self.attempts + 1):
            try:
                return self._once(method, path, body)
            except Unavailable as exc:
                if attempt == self.attempts:
                    raise
                pause = min(self.backoff_max, delay) * random.uniform(0.5, 1.0)
                logger.warning("%s %s failed (%s); retry %d in %.1f s", method, path, exc, attempt, pause)
                time.sleep(pause)
                delay *= 2
        raise Unavailable("no attempt made")  # attempts < 1

    def _once(self, method: str, path: str, body: Any) -> dict[str, Any]:
        data = None if body is None else json.dumps(body).encode()
        headers = {
            "Accept": "application/json",
            "User-Agent": f"keychest-agent/{__version__}",
            "X-KeyChest-Agent-Version": __version__,
            "X-KeyChest-Agent-Time": dt.datetime.now(dt.UTC).isoformat(),
        }
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self.key:
            headers["Authorization"] = f"Bearer {self.key}"
        request = urllib.request.Request(self.server.rstrip("/") + path, data=data, method=method, headers=headers)  # noqa: S310 - the operator's own server URL
        try:
            with urllib.request.urlopen(request, timeout=self.timeout, context=self._context()) as response:  # noqa: S310
                payload: dict[str, Any] = json.loads(response.read() or b"{}")
                return payload
        except urllib.error.HTTPError as exc:
            detail = exc.read()[:300].decode("utf-8", "replace")
            if exc.code == 401:
                raise Unauthorized(detail) from None
            if exc.code in TRANSIENT_STATUSES:
                raise Unavailable(f"HTTP {exc.code}") from None
            raise Refused(f"HTTP {exc.code}: {detail}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            raise Unavailable(str(exc)) from None
