"""The public spot check never holds a web thread for long (issue 22 item 11): it is bounded by
its own deadline, at most KEYCHEST_SPOTCHECK_CONCURRENCY run at once per web process, and IPv6
clients are rate-limited by their /64. And it is the scan pipeline without storing (issue 20)."""

from __future__ import annotations

import threading
import time

import pytest
from django.test import Client
from django.urls import reverse

from keychest.ratelimit import client_network
from monitors.models import Finding, ScanResult, Server, SpotCheck
from monitors.scanning import scan_servers
from monitors.services import ca_bundle_create, server_enrol
from monitors.spotcheck import SpotCheckResult, spotcheck


class _Request:
    def __init__(self, address: str) -> None:
        self.META = {"REMOTE_ADDR": address}


def test_an_ipv6_client_is_keyed_by_its_64_and_a_mapped_ipv4_by_its_address(settings) -> None:
    settings.SECURE_PROXY_SSL_HEADER = None
    assert client_network(_Request("2001:db8:1:2:aaaa::1")) == "2001:db8:1:2::/64"
    assert client_network(_Request("2001:db8:1:2:ffff:ffff:ffff:ffff")) == "2001:db8:1:2::/64"
    assert client_network(_Request("::ffff:192.0.2.7")) == "192.0.2.7"
    assert client_network(_Request("192.0.2.7")) == "192.0.2.7"


@pytest.mark.django_db
def test_ipv6_clients_of_one_64_share_the_spot_check_limit(lab_settings) -> None:
    lab_settings.KEYCHEST_SPOTCHECK_RATE = 2
    post = {"target": "127.0.0.1:1"}
    statuses = [
        Client(REMOTE_ADDR=address).post(reverse("spotcheck"), post).status_code
        for address in ("2001:db8:7:7::1", "2001:db8:7:7:1::2", "2001:db8:7:7:ffff::3")
    ]
    assert statuses == [302, 302, 429]
    assert Client(REMOTE_ADDR="2001:db8:7:8::1").post(reverse("spotcheck"), post).status_code == 302


@pytest.mark.django_db
def test_a_silent_server_holds_the_web_thread_only_for_the_spot_check_deadline(lab, lab_settings) -> None:
    lab_settings.KEYCHEST_SCAN_DEADLINE = 30.0  # a team scan may wait; the public page may not
    lab_settings.KEYCHEST_SCAN_CONNECT_TIMEOUT = 30.0
    lab_settings.KEYCHEST_SPOTCHECK_DEADLINE = 1.0
    endpoint = lab.silent()
    started = time.monotonic()
    response = Client().post(reverse("spotcheck"), {"target": f"127.0.0.1:{endpoint.port}"})
    assert time.monotonic() - started < 3.0
    assert response.status_code == 302
    assert [f["code"] for f in SpotCheck.objects.get().result["findings"]] == ["timeout"]


@pytest.mark.django_db(transaction=True)
def test_spot_checks_beyond_the_cap_are_turned_away_while_one_runs(lab, lab_settings) -> None:
    lab_settings.KEYCHEST_SPOTCHECK_CONCURRENCY = 1
    lab_settings.KEYCHEST_SPOTCHECK_DEADLINE = 2.0
    slow = lab.silent()
    first: list[int] = []
    running = threading.Thread(
        target=lambda: first.append(
            Client(REMOTE_ADDR="192.0.2.1").post(reverse("spotcheck"), {"target": f"127.0.0.1:{slow.port}"}).status_code
        )
    )
    running.start()
    time.sleep(0.5)
    busy = Client(REMOTE_ADDR="192.0.2.2").post(reverse("spotcheck"), {"target": "127.0.0.1:1"})
    running.join(10)
    assert busy.status_code == 503 and busy["Retry-After"] == "5"
    assert "Too many spot checks are running" in busy.content.decode()
    assert first == [302]
    # The slot is free again.
    assert Client(REMOTE_ADDR="192.0.2.2").post(reverse("spotcheck"), {"target": "127.0.0.1:1"}).status_code == 302


@pytest.mark.django_db
def test_the_spot_check_is_the_scan_pipeline_without_storing(people, lab, lab_name, lab_settings) -> None:
    name = lab_name("pipeline")
    endpoint = lab.tls(lab.leaf([name]), legacy=True)
    result = spotcheck(target=f"{name}:{endpoint.port}", ca_pem=lab.root_pem)
    assert isinstance(result, SpotCheckResult)
    assert not ScanResult.objects.exists() and not Finding.objects.exists() and not Server.objects.exists()
    bundle = ca_bundle_create(team=people.team_a, name="lab", pem=lab.root_pem)
    server = server_enrol(team=people.team_a, host=f"{name}:{endpoint.port}", ca_bundle=bundle)
    scan_servers([Server.objects.select_related("ca_bundle").get(pk=server.pk)])
    scanned = {(f.code, f.address, f.message) for f in Finding.objects.filter(server=server)}
    assert {(f.code, f.address, f.message) for f in result.findings} == scanned
    assert "legacy_tls" in {code for code, _, _ in scanned}
    assert result.dns.addresses == ["127.0.0.1"] and result.addresses[0].validation is not None
