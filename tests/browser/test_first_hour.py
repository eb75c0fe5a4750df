"""A new user's first hour (issue 14), in a real browser at desktop width and at 390 px:
sign up, confirm from the email in another browser (signed in at once), paste servers (a bad
line refused in plain words, kept on the page), the first scan of a lab TLS server on
127.0.0.x, "Send test" on the team's default channel received by a real SMTP server (aiosmtpd),
and a dashboard without a false alarm. No horizontal scroll on the dashboard or the servers
list, and a long team name keeps the top bar as it was."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from django.db.migrations.recorder import MigrationRecorder
from django.utils import timezone

from lab.dns import LabDNS
from lab.tls import Lab
from tests.browser.conftest import Browser, confirm, sign_up
from tests.notifications.conftest import EphemeralController, Smtp, _Handler

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]
PASSWORD = "a long enough passphrase 1"
CONFIRM = re.compile(r"https?://[^/\s]+(/accounts/confirm-email/\S+/)")


@dataclass
class World:
    smtp: Smtp
    target: str
    root_pem: str


@pytest.fixture
def world(settings) -> Iterator[World]:  # type: ignore[no-untyped-def]
    """A real SMTP server for every email, one lab TLS server behind a lab DNS name, eager tasks."""
    from keychest.celery import app

    handler = _Handler()
    controller = EphemeralController(handler, hostname="127.0.0.1", port=0)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_TIMEOUT = "127.0.0.1", controller.port, 5
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    eager = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        with Lab() as lab, LabDNS() as dns:
            settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True  # the lab listens on 127.0.0.x
            settings.KEYCHEST_DNS_NAMESERVERS = [dns.nameserver]
            settings.KEYCHEST_SCAN_DEADLINE = 3.0
            host = "www.first-hour.keychest.test"
            dns.set(host, ["127.0.0.2"])
            endpoint = lab.tls(lab.leaf([host]), hosts=["127.0.0.2"])
            yield World(Smtp(handler, controller.port), f"{host}:{endpoint.port}", lab.root_pem)
    finally:
        app.conf.task_always_eager = eager
        controller.stop()


# The lines a link's text is laid out on, from the position of each character.
_LINES = """(el) => {
  const text = el.textContent, node = document.createTreeWalker(el, NodeFilter.SHOW_TEXT);
  const lines = []; let top = null;
  for (let n = node.nextNode(); n; n = node.nextNode()) {
    for (let i = 0; i < n.length; i++) {
      const r = document.createRange(); r.setStart(n, i); r.setEnd(n, i + 1);
      const y = Math.round(r.getBoundingClientRect().top);
      if (top === null || y > top + 2) { lines.push(''); top = y; }
      lines[lines.length - 1] += n.data[i];
    }
  }
  return lines;
}"""


def _no_horizontal_scroll(page) -> None:  # type: ignore[no-untyped-def]
    width = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    wide = page.evaluate(
        "() => [...document.querySelectorAll('body *')].filter(e => e.getBoundingClientRect().right > window.innerWidth)"
        ".slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right))"
    )
    assert width[0] <= width[1], f"{page.url}: {width[0]} px of content in a {width[1]} px window: {wide}"


def _sign_up_and_confirm(browser: Browser, world: World, width: int, email: str):  # type: ignore[no-untyped-def]
    """Sign up, then confirm from the email (received by SMTP) opened in another browser:
    signed in at once. Returns that second browser's page."""
    height = 844 if width < 500 else 900
    laptop = browser.new_page(width=width, height=height, timezone_id="Asia/Tokyo")
    sign_up(laptop, email, PASSWORD)

    [welcome] = world.smtp.to(email)
    link = CONFIRM.search(world.smtp.text(welcome)).group(1)  # type: ignore[union-attr]
    page = browser.new_page(width=width, height=height, timezone_id="Asia/Tokyo")
    confirm(page, link)
    assert "you are signed in" in page.inner_text(".messages")
    assert page.get_by_test_id("account").inner_text() == email
    return page


def _paste_servers(browser: Browser, page, world: World, width: int) -> None:  # type: ignore[no-untyped-def]
    """Servers pasted (a bad line refused in words and kept after a reload), the first scan ok,
    and a single bad server refused at once."""
    page.goto("/servers/")
    page.fill("textarea[name=text]", f"{world.target}\nmy server\n")
    page.select_option("select[name=ca_bundle]", label="lab")
    page.get_by_role("button", name="Add all").click()
    page.wait_for_load_state()
    assert "1 added, 1 not understood." in page.inner_text(".messages")
    bad = page.get_by_test_id("bulk-errors").inner_text()
    assert "Line 2: my server" in bad and "has a space in it; a host name has none" in bad
    assert "Codepoint" not in bad

    # The first scan ran: the lab server is ok, with nothing to explain.
    host = world.target.split(":")[0]
    row = page.locator(f"tr[data-host='{host}']")
    page.goto("/servers/")
    assert row.locator("a.server").inner_text() == world.target  # a link, the name unbroken
    assert row.get_by_test_id("status").inner_text() == "ok"
    assert row.get_by_test_id("why").inner_text() == ""
    assert page.get_by_test_id("bulk-errors").count() == 1  # still there after the reload
    _no_horizontal_scroll(page)
    browser.screenshot(page, f"first-hour-servers-{width}")

    page.fill("input[name=host]", "https://my shop.example/")
    page.get_by_role("button", name="Add server").click()
    page.wait_for_load_state()
    assert "Not added: “my shop.example” has a space in it" in page.inner_text(".messages")


def _send_test(page, world: World, email: str) -> None:  # type: ignore[no-untyped-def]
    """The team already has its "Email every member" channel; its test reaches the member."""
    page.goto("/notifications/channels/")
    # The add form shows the fields of the chosen kind only.
    assert page.locator("#id_email_addresses").is_visible() and not page.locator("#id_url").is_visible()
    page.select_option("#id_kind", "webhook")
    assert page.locator("#id_url").is_visible() and not page.locator("#id_email_addresses").is_visible()
    page.get_by_role("link", name="Email every member").click()
    page.get_by_role("button", name="Send test").click()
    page.wait_for_load_state()
    page.reload()
    attempts = page.get_by_test_id("attempts").inner_text()
    assert "ok" in attempts and "will retry" not in attempts and "failed" not in attempts
    tests = [m for m in world.smtp.to(email) if "Test message" in str(m["Subject"])]
    assert len(tests) == 1 and "KeyChest can reach you" in world.smtp.text(tests[0])


def _long_names(page, team) -> None:  # type: ignore[no-untyped-def]
    """A long host name wraps between labels only; a long team name changes neither the top
    bar's height nor the page's width."""
    from monitors.models import Finding, Server

    long_host = "a-rather-long-service-name.internal-applications.eu-west.example.com"
    server = Server.objects.create(team=team, host=long_host, last_scan_at=timezone.now())
    now = timezone.now()
    Finding.objects.create(
        team=team,
        server=server,
        code="connect_failed",
        severity="error",
        message="Nothing answers",
        address="192.0.2.1",
        first_seen=now,
        last_seen=now,
    )
    page.reload()
    link = page.get_by_test_id("incident-unreachable").locator("a.server")
    lines = link.evaluate(_LINES)
    assert "".join(lines) == f"{long_host}:443"
    assert all(line.endswith(".") for line in lines[:-1]), lines
    _no_horizontal_scroll(page)

    bar = page.locator("header.topbar").bounding_box()["height"]  # type: ignore[index]
    team.name = "A team name of eighty-five characters, which pushed the top bar onto a second line"
    team.save(update_fields=["name"])
    for path in ("/dashboard/", "/servers/"):
        page.goto(path)
        assert page.locator("header.topbar").bounding_box()["height"] == bar  # type: ignore[index]
        _no_horizontal_scroll(page)


@pytest.mark.parametrize("width", [1280, 390])
def test_a_new_users_first_hour(browser: Browser, world: World, width: int) -> None:
    email = f"newcomer{width}@example.org"
    # A fresh installation: its database was made a minute ago and no heartbeat has come yet.
    MigrationRecorder.Migration.objects.update(applied=timezone.now())
    page = _sign_up_and_confirm(browser, world, width, email)

    # The team trusts the lab's private root (as a team CA bundle would), then pastes servers.
    from keychest.accounts.models import User
    from monitors.services import ca_bundle_create

    team = User.objects.get(email=email).memberships.get().team
    ca_bundle_create(team=team, name="lab", pem=world.root_pem)
    _paste_servers(browser, page, world, width)
    _send_test(page, world, email)

    # The dashboard: the server counted, no false "scheduled scans have not run" alarm.
    page.get_by_role("link", name="Dashboard").click()
    page.wait_for_url(re.compile(r"/dashboard/$"))
    assert page.get_by_test_id("tile-servers").locator(".tile-value").inner_text() == "1"
    assert page.get_by_test_id("pipeline-down").count() == 0
    _no_horizontal_scroll(page)
    browser.screenshot(page, f"first-hour-dashboard-{width}")

    _long_names(page, team)
