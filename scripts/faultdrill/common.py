"""The fault drill's shared constants and small helpers (issue 21)."""

from __future__ import annotations

import logging
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path

BASE = Path(__file__).resolve().parents[2]
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
