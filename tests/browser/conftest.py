"""Browser harness: Debian's headless Chromium driven by Playwright against a live server.

Every page a test opens is watched for console errors, uncaught exceptions and
Content-Security-Policy violations; any of them fails the test at teardown. Screenshots go to
`var/screenshots/` so a person can look at what the product shows.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from django.conf import settings
from django.core import mail

from tests.conftest import PASSWORD

if TYPE_CHECKING:
    from playwright.sync_api import Browser as PlaywrightBrowser
    from playwright.sync_api import BrowserContext, ConsoleMessage, Page

CHROMIUM = os.environ.get("KEYCHEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
SCREENSHOTS = Path(settings.BASE_DIR) / "var" / "screenshots"

# Runs in every document before the page's own scripts; CSP does not apply to init scripts.
_WATCH_CSP = """
window.__cspViolations = [];
document.addEventListener('securitypolicyviolation', (e) => {
  window.__cspViolations.push(e.violatedDirective + ' ' + (e.blockedURI || 'inline') + ' ' + e.sourceFile + ':' + e.lineNumber);
});
"""


@dataclass
class PageProblems:
    """What went wrong in the browser while a test ran."""

    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    csp_violations: list[str] = field(default_factory=list)

    def all(self) -> list[str]:
        return self.console_errors + self.page_errors + self.csp_violations


# Playwright's sync API keeps an event loop registered in this thread, so Django would refuse
# the test's own (plain synchronous) ORM calls. Allow them for the browser tests only, from
# setup until every fixture (the database flush included) is torn down, so the variable never
# leaks into other tests or their subprocesses.
@pytest.hookimpl(wrapper=True)
def pytest_runtest_setup(item: pytest.Item) -> object:
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    return (yield)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> object:
    try:
        return (yield)
    finally:
        os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


# Module scope, not session: Playwright's loop stays registered in this thread while it runs,
# and tests elsewhere that call asyncio.run() must not find it.
@pytest.fixture(scope="module")
def _browser() -> Iterator[PlaywrightBrowser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(f"Chromium is not installed at {CHROMIUM} (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()


class Browser:
    """A few browser contexts (one per person) that share the problem list."""

    def __init__(self, browser: PlaywrightBrowser, base_url: str, problems: PageProblems) -> None:
        self._browser = browser
        self.base_url = base_url
        self.problems = problems
        self._contexts: list[BrowserContext] = []
        self._allowed: list[re.Pattern[str]] = []

    def allow_console(self, pattern: str) -> None:
        """Accept console errors matching `pattern` from now on (e.g. an expected 404)."""
        self._allowed.append(re.compile(pattern))

    def new_page(
        self, *, timezone_id: str = "UTC", javascript: bool = True, width: int = 1280, height: int = 900
    ) -> Page:
        context = self._browser.new_context(
            base_url=self.base_url,
            timezone_id=timezone_id,
            viewport={"width": width, "height": height},
            java_script_enabled=javascript,
        )
        context.add_init_script(_WATCH_CSP)
        context.set_default_timeout(15_000)
        self._contexts.append(context)
        page = context.new_page()
        page.on("console", self._on_console)
        page.on("pageerror", lambda error: self.problems.page_errors.append(str(error)))
        page.on("load", lambda: self._collect_csp(page))
        # Confirmations ("Remove this server?") are answered yes, as a person going ahead would.
        page.on("dialog", lambda dialog: dialog.accept())
        return page

    def _on_console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            if any(p.search(message.text) for p in self._allowed):
                return
            self.problems.console_errors.append(f"{message.text} @ {message.location}")

    def _collect_csp(self, page: Page) -> None:
        if not page.context.pages or page.is_closed():
            return
        try:
            found = page.evaluate("window.__cspViolations || []")
        except Exception:  # the page navigated away meanwhile
            return
        self.problems.csp_violations.extend(v for v in found if v not in self.problems.csp_violations)

    def check(self, page: Page) -> None:
        """Collect CSP violations of the page as it is now (call before navigating away)."""
        self._collect_csp(page)

    def screenshot(self, page: Page, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        self.check(page)
        return path

    def close(self) -> None:
        for context in self._contexts:
            for page in context.pages:
                self._collect_csp(page)
            context.close()


@pytest.fixture
def browser(_browser: PlaywrightBrowser, live_server: object) -> Iterator[Browser]:
    problems = PageProblems()
    harness = Browser(_browser, live_server.url, problems)  # type: ignore[attr-defined]
    try:
        yield harness
    finally:
        harness.close()
    assert not problems.all(), "browser reported problems:\n" + "\n".join(problems.all())


def last_email_link(to: str, pattern: str) -> str:
    """The path of the last link matching `pattern` in the newest email sent to `to`."""
    for message in reversed(mail.outbox):
        if to in message.to:
            match = re.search(pattern, message.body)
            if match:
                return re.sub(r"^https?://[^/]+", "", match.group(0))
    raise AssertionError(f"no email to {to} with a link matching {pattern!r}")


CONFIRM = r"https?://\S+/accounts/confirm-email/\S+/"
INVITE = r"https?://\S+/invitations/\S+/"


def fill_sign_up(page, email: str, password: str) -> None:  # type: ignore[no-untyped-def]
    page.goto("/accounts/signup/")
    page.fill("input[name=email]", email)
    page.fill("input[name=password1]", password)
    page.fill("input[name=password2]", password)


def sign_up(page, email: str, password: str) -> None:  # type: ignore[no-untyped-def]
    """Submit the sign-up form; ends on "confirm your email"."""
    fill_sign_up(page, email, password)
    page.locator("form button[type=submit]").last.click()
    page.wait_for_url(re.compile(r"/accounts/confirm-email/$"))


def confirm(page, link: str) -> None:  # type: ignore[no-untyped-def]
    """Open the confirmation link and confirm; ends on the dashboard."""
    page.goto(link)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/dashboard/$"))


def sign_in(page, email: str, password: str = PASSWORD) -> None:  # type: ignore[no-untyped-def]
    page.goto("/accounts/login/")
    page.fill("input[name=login]", email)
    page.fill("input[name=password]", password)
    page.locator("main form button[type=submit]").click()
    page.wait_for_url(re.compile(r"/dashboard/$"))
