"""contrib/prometheus/alerts.yml and contrib/grafana/keychest.json, checked by promtool against
the metric names KeyChest really exports."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml

from tests.api.conftest import key_client
from tests.api.test_metrics import URL, failing, promtool, samples, watched

CONTRIB = Path(__file__).resolve().parents[2] / "contrib"
ALERTS = CONTRIB / "prometheus" / "alerts.yml"
DASHBOARD = CONTRIB / "grafana" / "keychest.json"
METRIC = re.compile(r"\bkeychest_[a-z_]+")


def test_the_alert_rules_pass_promtool_and_their_unit_tests() -> None:
    check = promtool("check", "rules", str(ALERTS))
    assert check.returncode == 0, check.stdout + check.stderr
    tests = promtool("test", "rules", str(ALERTS.with_name("alerts_test.yml")))
    assert tests.returncode == 0, tests.stdout + tests.stderr
    names = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    assert {
        "KeyChestCertificateExpiringIn14Days",
        "KeyChestCertificateExpiringIn7Days",
        "KeyChestScanStale",
        "KeyChestFindingOpened",
    } <= names


def _dashboard_exprs() -> list[str]:
    document = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in document["panels"] for t in p.get("targets", [])]
    exprs += [v["definition"] for v in document["templating"]["list"]]
    return exprs


def test_the_dashboard_is_importable_and_its_queries_are_valid_promql(tmp_path) -> None:
    document = json.loads(DASHBOARD.read_text())
    assert document["uid"] and [i["name"] for i in document["__inputs"]] == ["DS_PROMETHEUS"]
    queries = [e for e in _dashboard_exprs() if not e.startswith("label_values(")]
    assert len(queries) >= 10
    # promtool parses PromQL only inside rule files: one recording rule per panel query, with
    # the dashboard's variable replaced by what "All" sends.
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:q{i}", "expr": q.replace("$instance", ".*")} for i, q in enumerate(queries)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard_rules.yml"
    path.write_text(yaml.safe_dump(rules))
    check = promtool("check", "rules", str(path))
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.django_db
def test_dashboard_and_alerts_only_use_metrics_keychest_exports(people, alice_read_key, lab_issuer) -> None:
    from datetime import timedelta

    from django.utils import timezone

    from certificates.models import Certificate, RenewalInfo
    from monitors.models import DomainRegistration, Finding, RegistrationWatch

    now = timezone.now()
    server, result = watched(people.team_a, lab_issuer, "www.example.com")
    RenewalInfo.objects.create(
        certificate=Certificate.objects.get(sha256=result.leaf_sha256), window_start=now, window_end=now
    )
    failing(server, address="192.0.2.2", code="timeout", ok_until=now - timedelta(days=2))
    Finding.objects.create(
        team=people.team_a, server=server, code="expired", severity="critical", message="m",
        first_seen=now, last_seen=now,
    )  # fmt: skip
    registration = DomainRegistration.objects.create(domain="example.com", expires_at=now + timedelta(days=9))
    RegistrationWatch.objects.create(team=people.team_a, registration=registration)
    exported = set(samples(key_client(alice_read_key).get(URL).content))

    used = {m for e in _dashboard_exprs() for m in METRIC.findall(e)}
    used |= set(METRIC.findall(ALERTS.read_text()))
    assert used and used <= exported, used - exported
