"""The whole story in a real browser, against the real scanner and the TLS lab:
sign up -> verify -> bulk add servers -> scan results -> dashboard numbers -> CSV/ICS export ->
invite a colleague -> charlie (another team) gets 404 on alice's pages."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import pytest

from lab.dns import LabDNS
from lab.pki import self_signed
from lab.tls import Lab
from tests.browser.conftest import CONFIRM, INVITE, Browser, confirm, last_email_link, sign_in, sign_up
from tests.conftest import PASSWORD, make_user

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
NOW = dt.datetime.now(dt.UTC)


@pytest.fixture
def lab_world(settings) -> Iterator[dict[str, object]]:
    """Six lab servers: expiring in 3, 10 and 60 days, expired, wrong name, self-signed."""
    with Lab() as lab, LabDNS() as dns:
        settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
        settings.KEYCHEST_DNS_NAMESERVERS = [dns.nameserver]
        settings.KEYCHEST_SCAN_DEADLINE = 3.0
        le = lab.root.intermediate("Let's Encrypt R11 (lab)")
        targets = {}

        def serve(label: str, issued) -> None:  # type: ignore[no-untyped-def]
            host = f"{label}.flow.keychest.test"
            dns.set(host, ["127.0.0.1"])
            targets[label] = f"{host}:{lab.tls(issued).port}"

        def leaf(label: str, days_left: float, names: list[str] | None = None):  # type: ignore[no-untyped-def]
            not_after = NOW + dt.timedelta(days=days_left)
            return le.issue(
                names or [f"{label}.flow.keychest.test"],
                not_before=not_after - dt.timedelta(days=90),
                not_after=not_after,
            )

        serve("now", leaf("now", 3))
        serve("soon", leaf("soon", 10))
        serve("later", leaf("later", 60))
        serve("old", leaf("old", -2))
        serve("wrong", leaf("wrong", 40, ["elsewhere.example"]))
        serve("box", self_signed(["box.flow.keychest.test"]))
        yield {"lab": lab, "targets": targets}


@pytest.fixture
def eager_celery() -> Iterator[None]:
    from keychest.celery import app

    before = app.conf.task_always_eager
    app.conf.task_always_eager = True
    yield
    app.conf.task_always_eager = before


def _sign_up(page, email: str, password: str) -> None:  # type: ignore[no-untyped-def]
    """Sign up and confirm from the email; ends on the dashboard."""
    sign_up(page, email, password)
    confirm(page, last_email_link(email, CONFIRM))


def _dashboard_numbers(alice) -> None:  # type: ignore[no-untyped-def]
    alice.get_by_role("link", name="Dashboard").click()
    alice.wait_for_url(re.compile(r"/dashboard/$"))
    value = lambda key: alice.get_by_test_id(f"tile-{key}").locator(".tile-value").inner_text()  # noqa: E731
    assert value("expiring-now") == "1"
    assert value("expiring-soon") == "2"
    assert value("servers") == "6"
    assert alice.get_by_test_id("bucket-count-d0_7").inner_text() == "1"
    assert alice.get_by_test_id("bucket-count-d8_14").inner_text() == "1"
    assert alice.get_by_test_id("bucket-count-expired").inner_text() == "1"
    total = sum(int(g.get_attribute("data-total") or 0) for g in alice.locator("[data-testid=calendar] g").all())
    assert total >= 4
    assert "hostname_mismatch" in alice.get_by_test_id("incident-hostname").inner_text()
    # Only the self-signed box is a configuration error: the lab root is trusted for this team.
    assert alice.get_by_test_id("incident-configuration").locator("tbody tr").count() == 1


def _exports(alice, targets: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    """The renewal calendar (ICS) and the servers (CSV)."""
    with alice.expect_download() as ics:
        alice.get_by_test_id("export-ics").click()
    calendar = open(ics.value.path()).read()  # noqa: SIM115
    assert "BEGIN:VCALENDAR" in calendar and "now.flow.keychest.test" in calendar
    alice.goto("/servers/")
    with alice.expect_download() as csv_download:
        alice.get_by_role("link", name="Export CSV").click()
    csv_text = open(csv_download.value.path()).read()  # noqa: SIM115
    assert all(t.split(":")[0] in csv_text for t in targets.values())


def _invite_bob(browser: Browser, alice, team, password: str) -> None:  # type: ignore[no-untyped-def]
    """Alice invites bob; he signs up from the link, joins and sees the team's servers."""
    alice.goto("/teams/")
    alice.locator("a", has_text=team.name).first.click()
    alice.fill("input[name=email]", "bob@example.org")
    alice.get_by_role("button", name="Send invitation").click()
    alice.wait_for_load_state()
    bob = browser.new_page()
    invitation = last_email_link("bob@example.org", INVITE)
    _sign_up(bob, "bob@example.org", password)
    bob.goto(invitation)
    bob.get_by_role("button", name="Accept and join").click()
    bob.wait_for_url(re.compile(r"/dashboard/$"))
    assert bob.get_by_test_id("tile-servers").locator(".tile-value").inner_text() == "6"


def _charlie_gets_404(browser: Browser, team) -> None:  # type: ignore[no-untyped-def]
    """Charlie, in his own team, gets 404 on alice's server, certificate and team pages."""
    from monitors.models import ScanResult, Server

    server = Server.objects.get(team=team, host="now.flow.keychest.test")
    leaf = ScanResult.objects.filter(server=server, current=True).first()
    make_user("charlie@example.org", PASSWORD)
    charlie = browser.new_page()
    sign_in(charlie, "charlie@example.org", PASSWORD)
    browser.allow_console(r"status of 404")
    for url in (f"/servers/{server.uuid}/", f"/certificates/{leaf.leaf_sha256}/", f"/teams/{team.uuid}/"):
        response = charlie.goto(url)
        assert response is not None and response.status == 404, url
        assert "now.flow.keychest.test" not in charlie.content()
    assert "now.flow" not in charlie.goto("/servers/").text()  # type: ignore[union-attr]


def test_the_whole_story(browser: Browser, lab_world, eager_celery) -> None:
    targets: dict[str, str] = lab_world["targets"]  # type: ignore[assignment]
    password = "a long enough passphrase 1"
    alice = browser.new_page(timezone_id="America/New_York")
    _sign_up(alice, "alice@example.org", password)

    # Trust the lab's private root for this team (a team CA bundle), then paste the servers.
    from keychest.accounts.models import User
    from monitors.services import ca_bundle_create

    team = User.objects.get(email="alice@example.org").memberships.get().team
    ca_bundle_create(team=team, name="lab", pem=lab_world["lab"].root_pem)  # type: ignore[attr-defined]
    alice.goto("/servers/")
    alice.fill("textarea[name=text]", "\n".join(targets.values()) + "\nnot a host name\n")
    alice.select_option("select[name=ca_bundle]", label="lab")
    alice.get_by_role("button", name="Add all").click()
    alice.wait_for_load_state()
    assert "6 added, 1 not understood." in alice.inner_text(".messages")
    # The first scans ran (eagerly here): every server has a status and an expiry.
    rows = alice.locator("[data-testid=servers] tbody tr")
    assert rows.count() == 6
    statuses = {
        alice.locator(f"tr[data-host='{t.split(':')[0]}'] [data-testid=status]").inner_text() for t in targets.values()
    }
    assert "pending" not in statuses and "error" in statuses and "ok" in statuses
    browser.screenshot(alice, "flow-servers")

    _dashboard_numbers(alice)
    browser.screenshot(alice, "flow-dashboard")
    _exports(alice, targets)
    _invite_bob(browser, alice, team, password)
    _charlie_gets_404(browser, team)
