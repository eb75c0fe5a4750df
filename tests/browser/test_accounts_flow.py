"""The account flow in a real browser: sign up, verify, teams, invitations, tenancy."""

from __future__ import annotations

import re

import pytest

from keychest.accounts.models import Team
from tests.browser.conftest import CONFIRM, INVITE, Browser, fill_sign_up, last_email_link, sign_in
from tests.conftest import PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def _sign_up_and_verify(browser: Browser, page, email: str, password: str, *, shot: str | None = None) -> None:
    fill_sign_up(page, email, password)
    if shot:
        browser.screenshot(page, f"{shot}-signup")
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile(r"/accounts/confirm-email/$"))
    page.goto(last_email_link(email, CONFIRM))
    if shot:
        browser.screenshot(page, f"{shot}-confirm")
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/dashboard/$"))


def test_sign_up_verify_team_invite_accept_switch_and_tenancy(browser: Browser) -> None:
    password = "a long enough passphrase 1"
    alice = browser.new_page(timezone_id="Europe/Prague")
    _sign_up_and_verify(browser, alice, "alice@example.org", password, shot="account")
    assert alice.get_by_test_id("current-team").inner_text() == "alice's team"
    browser.screenshot(alice, "dashboard-empty")

    # A shared team, and an invitation for bob.
    alice.goto("/teams/")
    alice.fill("input[name=name]", "Operations")
    alice.locator("form[action='/teams/new/'] button[type=submit]").click()
    alice.wait_for_url(re.compile(r"/teams/[0-9a-f-]{36}/$"))
    team_url = alice.url.removeprefix(browser.base_url)
    alice.fill("input[name=email]", "bob@example.org")
    alice.select_option("select[name=role]", "member")
    alice.get_by_role("button", name="Send invitation").click()
    alice.wait_for_load_state()
    assert "Invitation sent to bob@example.org" in alice.inner_text("main")
    browser.screenshot(alice, "team-detail")

    # Bob signs up from the invitation, verifies, and accepts.
    bob = browser.new_page()
    invitation = last_email_link("bob@example.org", INVITE)
    bob.goto(invitation)
    assert "Join “Operations”" in bob.inner_text("main")
    _sign_up_and_verify(browser, bob, "bob@example.org", password)
    bob.goto(invitation)
    bob.get_by_role("button", name="Accept and join").click()
    bob.wait_for_url(re.compile(r"/dashboard/$"))
    assert bob.get_by_test_id("current-team").inner_text() == "Operations"

    # The team switcher takes bob back to his own team and again to Operations.
    bob_team = Team.objects.get(memberships__user__email="bob@example.org", is_personal=True)
    # With JavaScript the switcher submits itself on change (the button is for no-JS browsers).
    assert not bob.locator("form.team-switch button[type=submit]").is_visible()
    with bob.expect_navigation():
        bob.select_option("#team-select", str(bob_team.uuid))
    assert bob.get_by_test_id("current-team").inner_text() == "bob's team"
    bob.goto(team_url)
    assert "bob@example.org" in bob.inner_text("[data-testid=members]")

    # Charlie, in another team, gets 404 for alice's team pages.
    make_user("charlie@example.org", PASSWORD)
    charlie = browser.new_page()
    sign_in(charlie, "charlie@example.org", PASSWORD)
    browser.allow_console(r"status of 404")
    response = charlie.goto(team_url)
    assert response is not None and response.status == 404
    assert "Operations" not in charlie.content()
    browser.screenshot(charlie, "not-found")


def test_the_harness_catches_csp_violations_and_console_errors(_browser, live_server) -> None:
    """A page with inline script and style under our policy is reported, so a passing run means something."""
    from keychest.middleware import CONTENT_SECURITY_POLICY
    from tests.browser.conftest import PageProblems

    problems = PageProblems()
    harness = Browser(_browser, live_server.url, problems)
    page = harness.new_page()
    body = "<html><head><style>p{color:red}</style></head><body><p>x</p><script>console.error('boom')</script></body></html>"
    page.route(
        "**/probe",
        lambda route: route.fulfill(
            status=200,
            body=body,
            headers={"Content-Type": "text/html", "Content-Security-Policy": CONTENT_SECURITY_POLICY},
        ),
    )
    page.goto("/probe")
    page.wait_for_timeout(100)
    harness.check(page)
    harness.close()
    assert any("style-src" in v for v in problems.csp_violations), problems
    assert any("script-src" in v for v in problems.csp_violations), problems
