"""`manage.py scan` and `manage.py spotcheck` against the lab."""

from __future__ import annotations

import datetime as dt
import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from lab.pki import now
from monitors.models import Finding, ScanResult
from monitors.services import ca_bundle_create, server_enrol

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def test_scan_sync_scans_a_team_and_prints_a_summary(people, lab, lab_name, lab_settings) -> None:
    bundle = ca_bundle_create(team=people.team_a, name="lab", pem=lab.root_pem)
    good, expired = lab_name("cmd-good"), lab_name("cmd-expired")
    ep_good = lab.tls(lab.leaf([good]))
    ep_bad = lab.tls(
        lab.leaf([expired], not_before=now() - dt.timedelta(days=100), not_after=now() - dt.timedelta(days=1))
    )
    server_enrol(team=people.team_a, host=f"{good}:{ep_good.port}", ca_bundle=bundle)
    server_enrol(team=people.team_a, host=f"{expired}:{ep_bad.port}", ca_bundle=bundle)
    other = server_enrol(team=people.team_b, host=f"{good}:{ep_good.port}")
    summary = json.loads(run("scan", "--team", "Team A", "--sync", "--json"))
    assert summary["servers"] == 2 and summary["addresses"] == 2
    assert summary["findings"] == {"expired": 1}
    assert not ScanResult.objects.filter(server=other).exists()
    text = run("scan", "--server", str(other.uuid), "--sync")
    assert "servers 1, addresses 1" in text and "untrusted: 1" in text  # team B has no lab CA bundle
    assert Finding.objects.filter(server=other, code="untrusted").exists()


def test_scan_rejects_an_unknown_team(people) -> None:
    with pytest.raises(CommandError):
        run("scan", "--team", "nobody", "--sync")


def test_spotcheck_json_lists_addresses_chain_and_findings(lab, lab_name, lab_settings, tmp_path) -> None:
    name = lab_name("spot", "127.0.0.1")
    endpoint = lab.tls(lab.leaf([name]), legacy=True)
    ca_file = tmp_path / "lab.pem"
    ca_file.write_text(lab.root_pem)
    result = json.loads(run("spotcheck", f"{name}:{endpoint.port}", "--ca-file", str(ca_file), "--json"))
    assert result["host"] == name and result["port"] == endpoint.port
    [address] = result["addresses"]
    assert address["ip"] == "127.0.0.1" and address["tls_version"] == "TLSv1.3"
    leaf = address["chain"][0]
    assert leaf["names"] == [name] and len(leaf["sha256"]) == 64
    assert {"subject", "issuer", "not_before", "not_after"} <= set(leaf)
    assert [f["code"] for f in result["findings"]] == ["legacy_tls"]
    # Without the lab CA, the same server is untrusted; nothing was stored anywhere.
    plain = json.loads(run("spotcheck", f"{name}:{endpoint.port}", "--json"))
    assert {f["code"] for f in plain["findings"]} == {"legacy_tls", "untrusted"}
    assert not ScanResult.objects.exists()


def test_spotcheck_with_ip_and_starttls(lab, lab_settings, tmp_path) -> None:
    endpoint = lab.starttls("smtp", lab.leaf(["mx.keychest.test"]))
    text = run("spotcheck", f"mx.keychest.test:{endpoint.port}", "--ip", "127.0.0.1", "--starttls", "smtp")
    assert "127.0.0.1: TLSv1.3" in text and "untrusted" in text


def test_spotcheck_refuses_private_targets_by_default(lab, settings) -> None:
    settings.KEYCHEST_ALLOW_PRIVATE_TARGETS = False
    result = json.loads(run("spotcheck", "0x7f.1:443", "--json"))
    assert [f["code"] for f in result["findings"]] == ["target_refused"]
    result = json.loads(run("spotcheck", "example.com:443", "--ip", "169.254.169.254", "--json"))
    assert result["findings"][0]["code"] == "target_refused"


def test_spotcheck_rejects_a_bad_target() -> None:
    with pytest.raises(CommandError):
        run("spotcheck", "not a host")
