"""`make demo` builds a dashboard with real findings from the lab (the same code, in the test database)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db(transaction=True)

SCRIPT = Path(django_settings.BASE_DIR) / "scripts" / "demo.py"


def _demo_module():
    spec = importlib.util.spec_from_file_location("keychest_demo", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_the_demo_watches_the_lab_and_the_dashboard_shows_its_findings(settings, tmp_path) -> None:
    demo = _demo_module()
    running = demo.start_lab()
    try:
        listing = tmp_path / "log_list.json"
        demo.start_ctlog(running, listing)
        demo.start_rdap(running, tmp_path / "rdap.json")
        settings.KEYCHEST_RDAP_BOOTSTRAP = str(tmp_path / "rdap.json")
        settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = True
        settings.KEYCHEST_DNS_NAMESERVERS = [running.dns.nameserver]
        settings.KEYCHEST_CT_LOG_LIST = str(listing)
        settings.KEYCHEST_SCAN_DEADLINE = 3.0
        summary = demo.build(running)
    finally:
        running.stop()
    findings = summary["open_findings"]
    for code in (
        "hostname_mismatch",
        "self_signed",
        "incomplete_chain",
        "ips_disagree",
        "expired",
        "connect_failed",
        "dns_failure",
        "newer_certificate_not_deployed",
    ):
        assert findings.get(code), (code, findings)
    assert "staging.demo.keychest.test" in summary["ct"]["discovered_hosts"]
    assert summary["registrations"]["keychest.test"]["days_left"] == 25

    from keychest.accounts.models import User

    client = Client()
    client.force_login(User.objects.get(email=demo.DEMO_EMAIL))
    dashboard = client.get(reverse("dashboard"))
    tiles = dashboard.context["d"].tiles
    assert tiles.servers == len(demo.SCENARIOS)
    assert tiles.expiring_now >= 1 and tiles.servers_down == 2 and tiles.known_from_ct >= 4
    assert {b.key: b.count for b in dashboard.context["d"].planner}["d8_14"] >= 1
    assert client.post(reverse("account_logout")).status_code == 302
    login = Client().post(reverse("account_login"), {"login": demo.DEMO_EMAIL, "password": demo.DEMO_PASSWORD})
    assert login.status_code == 302 and login["Location"].endswith(reverse("dashboard"))
