"""The team's pages in a real browser: they render with data, pass the CSP and look right."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest

from tests.browser.conftest import Browser, sign_in
from tests.conftest import PASSWORD, make_user
from tests.dashboard.factories import CLOUDFLARE, DIGICERT, finding, server_with_certificate

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
D = timedelta(days=1)


def test_the_dashboard_shows_tiles_calendar_planner_and_incidents(browser: Browser) -> None:
    alice = make_user("alice@example.org")
    team = alice.memberships.get().team
    server_with_certificate(team, "www.example.com", expires_in=3 * D)
    server_with_certificate(team, "api.example.com", expires_in=10 * D, issuer=CLOUDFLARE)
    server_with_certificate(team, "mail.example.com", expires_in=120 * D, issuer=DIGICERT, port=465)
    bad = server_with_certificate(team, "old.example.com", expires_in=-1 * D)
    finding(bad, "expired", severity="critical", message="expired a day ago")
    finding(bad, "hostname_mismatch", message="the certificate names only old.example.net")

    page = browser.new_page(timezone_id="Europe/Prague")
    sign_in(page, "alice@example.org")
    assert page.get_by_test_id("tile-expiring-now").locator(".tile-value").inner_text() == "1"
    assert page.get_by_test_id("tile-expiring-soon").locator(".tile-value").inner_text() == "2"
    assert page.get_by_test_id("bucket-count-expired").inner_text() == "1"
    assert page.locator("[data-testid=calendar] rect").count() >= 3
    page.get_by_test_id("bucket-d8_14").locator("summary").click()
    assert "api.example.com" in page.get_by_test_id("bucket-d8_14").inner_text()
    assert "hostname_mismatch" in page.get_by_test_id("incident-hostname").inner_text()
    browser.screenshot(page, "dashboard")


def test_the_servers_page_filters_pauses_and_removes(browser: Browser) -> None:
    alice = make_user("alice@example.org")
    team = alice.memberships.get().team
    server_with_certificate(team, "www.example.com", expires_in=3 * D)
    bad = server_with_certificate(team, "api.example.com", expires_in=40 * D, issuer=CLOUDFLARE)
    finding(bad, "untrusted", severity="critical")
    page = browser.new_page()
    sign_in(page, "alice@example.org")
    page.get_by_role("link", name="Servers").first.click()
    page.wait_for_url(re.compile(r"/servers/$"))
    assert page.locator("[data-testid=servers] tbody tr").count() == 2
    browser.screenshot(page, "servers")
    with page.expect_navigation():
        page.select_option("#status", "problem")
    assert page.locator("[data-testid=servers] tbody tr").count() == 1
    page.locator("tr[data-host='api.example.com'] button", has_text="Pause").click()
    page.wait_for_load_state()
    assert "paused" in page.inner_text(".messages")
    page.goto("/servers/")
    page.locator("tr[data-host='www.example.com'] button", has_text="Remove").click()
    page.wait_for_load_state()
    assert page.locator("[data-testid=servers] tbody tr").count() == 1


def test_account_pages_match_the_site_and_pass_the_policy(browser: Browser) -> None:
    make_user("alice@example.org")
    page = browser.new_page()
    sign_in(page, "alice@example.org")
    for path, shot in (
        ("/accounts/email/", "account-email"),
        ("/accounts/password/change/", "account-password"),
        ("/accounts/2fa/", "account-2fa"),
        ("/accounts/2fa/totp/activate/", "account-totp"),
        ("/account/preferences/", "account-preferences"),
    ):
        response = page.goto(path)
        assert response is not None and response.status == 200, path
        # Reauthentication may come first for the TOTP set-up: answer it with the password.
        if page.locator("input[name=password]").count() and "reauthenticate" in page.url:
            page.fill("input[name=password]", PASSWORD)
            page.locator("main form button[type=submit]").click()
            page.wait_for_load_state()
        assert page.locator("header.topbar").count() == 1, path
        browser.screenshot(page, shot)
    # The TOTP set-up shows its QR code (a data: image, allowed by the policy) and the secret.
    assert page.url.endswith("/accounts/2fa/totp/activate/") or "reauthenticate" not in page.url


def test_the_essentials_work_without_javascript(browser: Browser) -> None:
    from keychest.accounts.services import team_create

    alice = make_user("alice@example.org")
    other = team_create(name="Second team", owner=alice)
    server_with_certificate(alice.memberships.get(team__is_personal=True).team, "www.example.com", expires_in=3 * D)
    page = browser.new_page(javascript=False)
    sign_in(page, "alice@example.org")
    # The team switcher's button is there and works.
    page.select_option("#team-select", str(other.uuid))
    page.locator("form.team-switch button[type=submit]").click()
    page.wait_for_load_state()
    assert page.get_by_test_id("current-team").inner_text() == "Second team"
    # Paste servers, filter with the button, pause one: plain forms and redirects.
    page.goto("/servers/")
    page.fill("textarea[name=text]", "a.example.com\nb.example.com:8443")
    page.get_by_role("button", name="Add all").click()
    page.wait_for_load_state()
    assert "2 added." in page.inner_text(".messages")
    assert page.get_by_test_id("first-scans").count() == 1
    page.fill("#q", "b.example")
    page.get_by_role("button", name="Filter").click()
    page.wait_for_load_state()
    assert page.locator("[data-testid=servers] tbody tr").count() == 1
    page.locator("tr[data-host='b.example.com'] button", has_text="Pause").click()
    page.wait_for_load_state()
    assert "paused" in page.inner_text(".messages")
    page.goto("/dashboard/")
    assert page.get_by_test_id("tile-servers").locator(".tile-value").inner_text() == "2"


def test_watch_a_domain_see_its_ct_history_and_watch_a_discovered_host(browser: Browser) -> None:
    from datetime import UTC, datetime

    from certificates.services import certificate_store_der
    from lab.ctlog.certgen import issue, make_ca

    ca = make_ca("Browser CT CA", parent=make_ca("Browser CT Root"))
    for names, days in ((["www.shop.example"], 20), (["api.shop.example", "shop.example"], 50)):
        issuance = issue(ca, names, not_before=datetime.now(UTC) - days * D)
        certificate_store_der(der=issuance.precertificate, source="ct", source_ref="log:1")
        certificate_store_der(der=issuance.certificate, source="ct", source_ref="log:2")
    make_user("alice@example.org")
    page = browser.new_page()
    sign_in(page, "alice@example.org")
    page.get_by_role("link", name="Domains").first.click()
    page.fill("input[name=domain]", "shop.example")
    page.get_by_role("button", name="Watch").click()
    page.wait_for_url(re.compile(r"/domains/[0-9a-f-]{36}/$"))
    history = page.get_by_test_id("history")
    assert history.locator("tbody tr").count() == 2
    assert "precertificate" in history.inner_text() and "certificate" in history.inner_text()
    browser.screenshot(page, "domain-history")
    page.get_by_role("link", name=re.compile("Discovered hosts")).click()
    page.locator("tr[data-host='api.shop.example'] button", has_text="Watch").click()
    page.wait_for_load_state()
    assert "Watching api.shop.example:443" in page.inner_text(".messages")
    assert "watched" in page.locator("tr[data-host='api.shop.example']").inner_text()
    browser.screenshot(page, "domain-hosts")
    page.goto("/certificates/")
    assert page.get_by_test_id("certificates").locator("tbody tr").count() == 2
    browser.screenshot(page, "certificates")


def test_the_issuance_policy_page_saves_and_shows_caa(browser: Browser) -> None:
    from django.utils import timezone

    from monitors.domains import domain_watch
    from monitors.models import IssuancePolicy, WatchedDomain

    alice = make_user("alice@example.org")
    team = alice.memberships.get().team
    domain_watch(team=team, domain="shop.example")
    WatchedDomain.objects.filter(team=team).update(
        caa_found=True, caa_domain="shop.example", caa_issue=["letsencrypt.org"], caa_checked_at=timezone.now()
    )
    page = browser.new_page()
    sign_in(page, "alice@example.org")
    page.goto("/domains/")
    page.get_by_test_id("policy-link").click()
    page.wait_for_url(re.compile(r"/domains/policy/$"))
    assert "letsencrypt.org" in page.get_by_test_id("caa").inner_text()
    page.fill("textarea[name=allowed_issuers]", "letsencrypt.org\npki.goog")
    page.fill("textarea[name=known_keys]", "not a pin")
    page.locator("[data-testid=policy-form] button[type=submit]").click()
    assert "64 hex digits" in page.locator("[role=alert]").inner_text()
    page.fill("textarea[name=known_keys]", "")
    with page.expect_navigation():
        page.locator("[data-testid=policy-form] button[type=submit]").click()
    assert IssuancePolicy.objects.get(team=team).allowed_issuers == ["letsencrypt.org", "pki.goog"]
    browser.screenshot(page, "issuance-policy")
