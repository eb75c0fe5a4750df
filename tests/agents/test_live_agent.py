"""Real `keychest-agent` processes against a real KeyChest server on loopback (live_server).

The SaaS runs with KEYCHEST_ALLOW_PRIVATE_TARGETS off, so it cannot reach the lab's 127.0.0.x
servers itself; the agent, inside the "network", can. The agent runs from a folder that holds only
its own package and kcproto (the layout `pip install ./agent` leaves), so it cannot import the
Django project.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.utils import timezone

from agents.models import Agent
from agents.services import agents_silent_check
from events.models import Event
from monitors.models import Finding, ScanResult, Server
from monitors.scanning import scan_server_ids
from monitors.services import ca_bundle_create, server_enrol

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def agent_path(tmp_path_factory) -> Path:  # type: ignore[no-untyped-def]
    """site-packages as `pip install ./agent` leaves it: keychest_agent and kcproto, nothing else."""
    folder = tmp_path_factory.mktemp("agent-site")
    (folder / "keychest_agent").symlink_to(ROOT / "agent" / "keychest_agent")
    (folder / "kcproto").symlink_to(ROOT / "kcproto")
    return folder


class FlakyProxy:
    """An HTTP proxy to the server that can answer result posts with 503 (an outage)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.fail_results = False
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _forward(self) -> None:
                if proxy.fail_results and self.path.startswith("/api/v1/agent/results"):
                    self.send_response(503)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                headers = {k: v for k, v in self.headers.items() if k.lower() not in ("host", "content-length")}
                request = urllib.request.Request(
                    proxy.upstream + self.path, data=body, method=self.command, headers=headers
                )
                try:
                    with urllib.request.urlopen(request, timeout=30) as answer:
                        status, payload = answer.status, answer.read()
                except urllib.error.HTTPError as exc:
                    status, payload = exc.code, exc.read()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            do_GET = _forward
            do_POST = _forward

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()


@dataclass
class AgentProcess:
    """Runs `python -m keychest_agent` (the console script's module) as a separate process."""

    site: Path
    state: Path
    nameserver: str

    def __call__(self, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PYTHONPATH": str(self.site),
            "HOME": str(self.state.parent),
            "KEYCHEST_AGENT_STATE": str(self.state),
            "KEYCHEST_AGENT_NAMESERVERS": self.nameserver,
            "KEYCHEST_AGENT_DEADLINE": "3",
            "KEYCHEST_AGENT_ATTEMPTS": "2",
        }
        return subprocess.run(
            [sys.executable, "-m", "keychest_agent", *args],
            env=env,
            cwd=self.state.parent,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def queued(self) -> list[Path]:
        return sorted((self.state / "queue").glob("*.json"))


@pytest.fixture
def agent_process(agent_path, tmp_path, lab_dns) -> AgentProcess:  # type: ignore[no-untyped-def]
    return AgentProcess(site=agent_path, state=tmp_path / "state", nameserver=lab_dns.nameserver)


@pytest.fixture
def saas(settings, live_server):  # type: ignore[no-untyped-def]
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    return live_server


@pytest.fixture
def intranet(people, lab, lab_name):  # type: ignore[no-untyped-def]
    """A private server (a lab name on 127.0.0.3) with the team's private CA."""
    name = lab_name("intranet", "127.0.0.3")
    endpoint = lab.tls(lab.leaf([name]), hosts=["127.0.0.3"])
    bundle = ca_bundle_create(team=people.team_a, name="corp root", pem=lab.root_pem)
    return server_enrol(team=people.team_a, host=f"{name}:{endpoint.port}", ca_bundle=bundle)


def create_and_assign(client, server: Server) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    created = client.post("/api/v1/agents/", {"name": "dc1"}, content_type="application/json").json()
    answer = client.post(
        f"/api/v1/agents/{created['id']}/assign/", {"servers": [str(server.uuid)]}, content_type="application/json"
    )
    assert answer.status_code == 200
    return created["id"], created["token"]


@pytest.fixture
def proxy(saas) -> Iterator[FlakyProxy]:  # type: ignore[no-untyped-def]
    running = FlakyProxy(saas.url)
    yield running
    running.close()


def test_an_agent_enrols_scans_a_private_server_and_reports(saas, alice_client, intranet, agent_process) -> None:
    agent_id, token = create_and_assign(alice_client, intranet)
    # The SaaS itself never scans it (and could not: private targets are off).
    assert scan_server_ids([intranet.pk]).servers == 0
    enrolled = agent_process("enrol", "--server", saas.url, "--token", token)
    assert enrolled.returncode == 0, enrolled.stderr
    assert token not in (agent_process.state / "agent.json").read_text()
    assert oct((agent_process.state / "agent.json").stat().st_mode & 0o777) == "0o600"
    ran = agent_process("run", "--once")
    assert ran.returncode == 0, ran.stderr
    row = ScanResult.objects.get(server=intranet, current=True, alternate=False)
    assert row.address == "127.0.0.3" and row.trusted is True
    assert not Finding.objects.filter(server=intranet, resolved_at=None).exists()
    agent = Agent.objects.get(uuid=agent_id)
    assert agent.version == "0.1.0" and agent.last_contact_at is not None and abs(agent.clock_skew or 0) < 30
    shown = alice_client.get(f"/api/v1/agents/{agent_id}/").json()
    assert shown["state"] == "ok" and shown["servers"] == 1
    # A second token use fails: enrolment happens once.
    again = agent_process("enrol", "--server", saas.url, "--token", token)
    assert again.returncode == 2 and "token" in again.stderr


def test_the_agent_follows_the_work_list_pages(
    saas, settings, alice_client, people, lab, lab_name, intranet, agent_process
) -> None:
    """Pages of one target: the agent scans the servers of every page in one pass."""
    settings.KEYCHEST_AGENT_WORK_PAGE = 1
    name = lab_name("mail", "127.0.0.4")
    endpoint = lab.tls(lab.leaf([name]), hosts=["127.0.0.4"])
    second = server_enrol(team=people.team_a, host=f"{name}:{endpoint.port}", ca_bundle=intranet.ca_bundle)
    agent_id, token = create_and_assign(alice_client, intranet)
    answer = alice_client.post(
        f"/api/v1/agents/{agent_id}/assign/", {"servers": [str(second.uuid)]}, content_type="application/json"
    )
    assert answer.status_code == 200
    assert agent_process("enrol", "--server", saas.url, "--token", token).returncode == 0
    ran = agent_process("run", "--once")
    assert ran.returncode == 0, ran.stderr
    for server, address in ((intranet, "127.0.0.3"), (second, "127.0.0.4")):
        row = ScanResult.objects.get(server=server, current=True, alternate=False)
        assert row.address == address and row.trusted is True


def test_results_queued_during_an_outage_are_sent_after_a_restart(proxy, alice_client, intranet, agent_process) -> None:
    _, token = create_and_assign(alice_client, intranet)
    assert agent_process("enrol", "--server", proxy.url, "--token", token).returncode == 0
    proxy.fail_results = True
    first = agent_process("run", "--once")
    assert "results stay queued on disk" in first.stderr
    assert len(agent_process.queued()) == 1
    assert not ScanResult.objects.filter(server=intranet).exists()
    proxy.fail_results = False
    # A new process (the restart) sends the queued batch first, then scans again.
    second = agent_process("run", "--once")
    assert second.returncode == 0, second.stderr
    assert agent_process.queued() == []
    assert ScanResult.objects.filter(server=intranet, current=True).exists()


def test_a_revoked_agent_stops(saas, alice_client, intranet, agent_process) -> None:
    agent_id, token = create_and_assign(alice_client, intranet)
    assert agent_process("enrol", "--server", saas.url, "--token", token).returncode == 0
    assert alice_client.delete(f"/api/v1/agents/{agent_id}/").status_code == 204
    ran = agent_process("run", "--once")
    assert ran.returncode == 3 and "revoked" in ran.stderr
    assert not ScanResult.objects.filter(server=intranet).exists()


def test_a_hostile_agents_forged_verdict_loses_to_the_servers_judgement(
    saas, alice_client, people, lab, lab_name, agent_process
) -> None:
    from lab.pki import self_signed

    name = lab_name("appliance", "127.0.0.4")
    endpoint = lab.tls(self_signed([name]), hosts=["127.0.0.4"])
    server = server_enrol(team=people.team_a, host=f"{name}:{endpoint.port}")
    _, token = create_and_assign(alice_client, server)
    assert agent_process("enrol", "--server", saas.url, "--token", token).returncode == 0
    key = json.loads((agent_process.state / "agent.json").read_text())["key"]
    # The real agent scans; a hostile one would then rewrite the verdicts before posting.
    work = _call(saas.url, "GET", "/api/v1/agent/work", key)
    scanned = agent_process("run", "--once")
    assert scanned.returncode == 0
    assert Finding.objects.filter(server=server, code="self_signed", resolved_at=None).exists()
    item = {
        "target": work["targets"][0]["id"],
        "probes": [
            {
                "address": "127.0.0.4",
                "chain": [_chain_of(server)],
                "tls_version": "TLSv1.3",
                "trusted": True,
                "findings": [],
            }
        ],
        "agent_verdict": {"127.0.0.4": {"trusted": True, "findings": []}},
        "trusted": True,
        "findings": [],
    }
    answer = _call(saas.url, "POST", "/api/v1/agent/results", key, {"results": [item]})
    assert answer["accepted"] == [str(server.uuid)] and "self_signed" in answer["findings"]
    assert ScanResult.objects.get(server=server, current=True, alternate=False).trusted is False
    assert Finding.objects.filter(server=server, code="self_signed", resolved_at=None).exists()


def test_a_silent_agent_raises_an_event_and_a_report_ends_the_silence(
    saas, alice_client, intranet, agent_process
) -> None:
    agent_id, token = create_and_assign(alice_client, intranet)
    assert agent_process("enrol", "--server", saas.url, "--token", token).returncode == 0
    Agent.objects.filter(uuid=agent_id).update(last_contact_at=timezone.now() - timezone.timedelta(seconds=601))
    assert agents_silent_check() == 1
    assert Event.objects.filter(kind="agent_silent", payload__agent=agent_id).count() == 1
    assert b'data-testid="agent-silent"' in alice_client.get("/dashboard/").content
    assert agent_process("run", "--once").returncode == 0
    assert Agent.objects.get(uuid=agent_id).silent_since is None
    assert b'data-testid="agent-silent"' not in alice_client.get("/dashboard/").content


def test_the_agent_needs_no_django(agent_path) -> None:
    probe = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, keychest_agent.cli, keychest_agent.scan; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('django', 'keychest', 'monitors')))",
        ],
        env={"PATH": os.environ.get("PATH", ""), "PYTHONPATH": str(agent_path)},
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout.strip() == "[]"


def _chain_of(server: Server) -> str:
    import base64

    from certificates.models import Certificate

    sha = ScanResult.objects.get(server=server, current=True, alternate=False).leaf_sha256
    return base64.b64encode(bytes(Certificate.objects.get(sha256=sha).der)).decode()


def _call(base: str, method: str, path: str, key: str, body: object = None) -> dict:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(
        base + path,
        data=data,
        method=method,
        headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as answer:
        return json.loads(answer.read())


def test_an_agent_sweeps_a_private_range_the_saas_may_not(saas, alice_client, people, lab, agent_process) -> None:
    from discovery.models import FoundService
    from discovery.services import ranges_claim_due

    endpoint = lab.tls(lab.leaf(["nas.corp.test"]), hosts=["127.0.0.60"])
    created = alice_client.post("/api/v1/agents/", {"name": "dc1"}, content_type="application/json").json()
    assert agent_process("enrol", "--server", saas.url, "--token", created["token"]).returncode == 0
    body = {"cidr": "127.0.0.48/28", "ports": [endpoint.port]}
    refused = alice_client.post("/api/v1/ranges/", body, content_type="application/json")
    assert refused.status_code == 400  # the SaaS sweeps public ranges only
    added = alice_client.post("/api/v1/ranges/", {**body, "agent": created["id"]}, content_type="application/json")
    assert added.status_code == 201, added.content
    assert ranges_claim_due() == []  # the agent's range is never the SaaS's work
    ran = agent_process("run", "--once")
    assert ran.returncode == 0, ran.stderr
    assert "swept 127.0.0.48/28: 1 TLS services in 14 attempts" in ran.stderr
    found = FoundService.objects.get(ip_range__uuid=added.json()["id"])
    assert (found.address, found.port, found.names) == ("127.0.0.60", endpoint.port, ["nas.corp.test"])
    assert Event.objects.filter(kind="service_found", team=people.team_a).count() == 1


def test_the_agent_sweeps_its_ranges_under_one_global_rate_limit(saas, settings, alice_client, agent_process) -> None:
    """Two ranges of 14 closed addresses each, 20/s per range and 20/s for the whole agent (the
    work list's `sweep_rate`): 28 attempts take about 1.35 s, where each range alone would
    finish in 0.65 s (the two are swept together)."""
    settings.KEYCHEST_DISCOVERY_RATE = settings.KEYCHEST_DISCOVERY_RANGE_RATE = 20.0
    created = alice_client.post("/api/v1/agents/", {"name": "dc1"}, content_type="application/json").json()
    assert agent_process("enrol", "--server", saas.url, "--token", created["token"]).returncode == 0
    for cidr in ("127.0.0.208/28", "127.0.0.224/28"):
        body = {"cidr": cidr, "ports": [9], "agent": created["id"]}
        added = alice_client.post("/api/v1/ranges/", body, content_type="application/json")
        assert added.status_code == 201, added.content
    ran = agent_process("run", "--once", "--sweep-rate", "100")
    assert ran.returncode == 0, ran.stderr
    took = [
        float(m) for m in re.findall(r"swept 127\.0\.0\.\d+/28: 0 TLS services in 14 attempts, ([\d.]+) s", ran.stderr)
    ]
    assert len(took) == 2, ran.stderr
    assert max(took) >= 27 / 20.0 - 0.1


def test_the_agent_refuses_to_send_its_token_over_plain_http_off_the_machine(agent_process) -> None:
    refused = agent_process("enrol", "--server", "http://keychest.example.com", "--token", "kcat_x")
    assert refused.returncode == 2 and "plain HTTP" in refused.stderr
    assert not (agent_process.state / "agent.json").exists()
