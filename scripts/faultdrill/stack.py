"""The product's processes under the fault drill, and the API client that sets up the team (issue 21)."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from faultdrill.common import BASE, DOMAIN, EMAIL, PASSWORD, PYTHON, log
from faultdrill.lab import Lab


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
