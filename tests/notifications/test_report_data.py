from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.db import connection
from django.test.utils import CaptureQueriesContext

from keychest.accounts.models import User
from monitors.models import Finding, ScanResult, Server
from notifications.report_data import teams_report_data
from notifications.reports import weekly_reports_send_due

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 23, 7, 0, tzinfo=UTC)


def _cert(server: Server, address: str, *, left: timedelta, lifetime: timedelta, seed: str, error: str = "") -> None:
    ScanResult.objects.create(
        team=server.team,
        server=server,
        address=address,
        state_digest=hashlib.sha256(f"{seed}{address}".encode()).hexdigest(),
        leaf_sha256="" if error else hashlib.sha256(seed.encode()).hexdigest(),
        error_code=error,
        subject=f"CN={server.host}",
        names=[server.host] if not error else [],
        not_before=None if error else NOW + left - lifetime,
        not_after=None if error else NOW + left,
        first_seen=NOW - timedelta(days=3),
        last_seen=NOW,
    )


def _servers(team, count: int, prefix: str = "s") -> list[Server]:
    servers = []
    for i in range(count):
        server = Server.objects.create(team=team, host=f"{prefix}{i}.example.com")
        _cert(server, "192.0.2.1", left=timedelta(days=60 + i), lifetime=timedelta(days=90), seed=f"{prefix}{i}")
        servers.append(server)
    return servers


def test_report_lists_expiring_certificates_per_server_with_addresses_and_renewal_state(people, smtp) -> None:
    User.objects.update(date_joined=datetime(2025, 1, 1, tzinfo=UTC))
    team = people.team_a
    soon = Server.objects.create(team=team, host="shop.example.com")
    _cert(soon, "192.0.2.10", left=timedelta(days=3), lifetime=timedelta(days=90), seed="shop")
    _cert(soon, "2001:db8::10", left=timedelta(days=3), lifetime=timedelta(days=90), seed="shop")
    later = Server.objects.create(team=team, host="api.example.com", port=8443)
    _cert(later, "192.0.2.20", left=timedelta(days=20), lifetime=timedelta(days=90), seed="api")
    fine = Server.objects.create(team=team, host="www.example.com")
    _cert(fine, "192.0.2.30", left=timedelta(days=60), lifetime=timedelta(days=90), seed="www")
    down = Server.objects.create(team=team, host="old.example.com")
    _cert(down, "192.0.2.40", left=timedelta(0), lifetime=timedelta(0), seed="old", error="connection_refused")
    Finding.objects.create(
        team=team,
        server=fine,
        code="ips_disagree",
        severity="warning",
        message="Addresses serve different certificates",
        first_seen=NOW - timedelta(days=1),
        last_seen=NOW,
    )
    with time_machine.travel(NOW, tick=False):
        weekly_reports_send_due(email="alice@example.org", force=True)
    [message] = smtp.to("alice@example.org")
    text = smtp.text(message)
    assert "Servers: 4" in text and "Certificates: 3" in text and "Problems: 2" in text
    within_7, within_28 = text.split("Expiring within 7 days:")[1].split("Expiring within 28 days:")
    assert "shop.example.com:443 [192.0.2.10, 2001:db8::10]: shop.example.com expires in 3 days" in within_7
    assert "Thu 26 Mar 2026 07:00 UTC" in within_7 and "renewal overdue" in within_7
    assert "api.example.com:8443" in within_28 and "renewal due" in within_28
    assert "www.example.com" not in within_7 + within_28.split("Open problems:")[0]
    assert "www.example.com:443: Addresses of one name serve different certificates (ips_disagree)" in text
    assert "old.example.com:443 [192.0.2.40]: Server down or TLS failure: connection_refused" in text
    assert "3 expiring within 7 days" not in message["Subject"] and "1 expiring within 7 days" in message["Subject"]


def test_queries_per_report_do_not_grow_with_servers(people) -> None:
    _servers(people.team_a, 2, "a")
    with CaptureQueriesContext(connection) as few:
        teams_report_data([people.team_a.pk], {}, NOW)
    _servers(people.team_a, 60, "b")
    with CaptureQueriesContext(connection) as many:
        data = teams_report_data([people.team_a.pk], {}, NOW)
    assert data[people.team_a.pk].servers == 62
    assert len(many) == len(few) <= 12
