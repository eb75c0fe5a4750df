"""The spot check and a server's detail page in a real browser, against the TLS lab."""

from __future__ import annotations

import re

import pytest

from lab.dns import LabDNS
from lab.tls import Lab
from monitors.models import Server
from monitors.scanning import scan_servers
from monitors.services import ca_bundle_create, server_enrol
from tests.browser.conftest import Browser
from tests.browser.test_dashboard_pages import sign_in
from tests.conftest import make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def lab_env(settings):  # type: ignore[no-untyped-def]
    with Lab() as lab, LabDNS() as dns:
        settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
        settings.KEYCHEST_DNS_NAMESERVERS = [dns.nameserver]
        settings.KEYCHEST_SCAN_DEADLINE = 2.0
        yield lab, dns


def test_a_spot_check_in_the_browser_gives_a_shareable_result(browser: Browser, lab_env) -> None:
    lab, dns = lab_env
    name = "spot.browser.keychest.test"
    dns.set(name, ["127.0.0.1"])
    endpoint = lab.tls(lab.leaf([name]), legacy=True)
    page = browser.new_page()
    page.goto("/spotcheck/")
    page.fill("input[name=target]", f"{name}:{endpoint.port}")
    with page.expect_navigation():
        page.get_by_role("button", name="Check").click()
    assert re.search(r"/spotcheck/[0-9a-f-]{36}/$", page.url)
    findings = page.get_by_test_id("findings").inner_text()
    assert "legacy_tls" in findings and "untrusted" in findings
    assert page.get_by_test_id("chain").count() == 1
    browser.screenshot(page, "spotcheck-result")
    shared = browser.new_page()
    shared.goto(page.url)
    assert name in shared.get_by_test_id("spotcheck-result").inner_text()


def test_the_server_detail_page_shows_every_address(browser: Browser, lab_env) -> None:
    lab, dns = lab_env
    alice = make_user("alice@example.org")
    team = alice.memberships.get().team
    name = "detail.browser.keychest.test"
    dns.set(name, ["127.0.0.1", "127.0.0.2"])
    endpoint = lab.tls(lab.leaf([name]), hosts=["127.0.0.1", "127.0.0.2"])
    endpoint.serve(lab.leaf([name]), host="127.0.0.2")
    bundle = ca_bundle_create(team=team, name="lab", pem=lab.root_pem)
    server = server_enrol(team=team, host=f"{name}:{endpoint.port}", ca_bundle=bundle, tags=["prod"])
    scan_servers([Server.objects.select_related("ca_bundle").get(pk=server.pk)])
    page = browser.new_page()
    sign_in(page, "alice@example.org")
    page.goto(f"/servers/{server.uuid}/")
    assert "ips_disagree" in page.get_by_test_id("findings").inner_text()
    assert page.get_by_test_id("chain").count() == 2
    assert "address_added" in page.get_by_test_id("timeline").inner_text()
    browser.screenshot(page, "server-detail")
    with page.expect_navigation():
        page.get_by_test_id("scan-now").click()
    assert "will be scanned" in page.locator(".messages").inner_text()
